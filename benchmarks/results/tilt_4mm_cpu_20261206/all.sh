#!/bin/bash
# the control and the outside-the-tumour scale (quality_scale's x0_detail100_labels_lll100_skip005_scaleout keys), seed 0
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bash $here/arm.sh ctl_s0 0
bash $here/arm.sh scaleout_s0 0 --set data.percentile_region=outside_tumour --set data.percentile_top=0.0
echo ALL-DONE
