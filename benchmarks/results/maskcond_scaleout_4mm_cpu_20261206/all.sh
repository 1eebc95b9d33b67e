#!/bin/bash
# seed 0 of the control and of the outside-the-tumour scale (quality_scale's x0_detail100_skip0025_maskcond_scaleout
# keys), then seed 1 of both
set -u
H=$(dirname "$0")
SCALEOUT="--set objective.x0_skip_sigma=0.025 --set data.percentile_region=outside_tumour --set data.percentile_top=0.0"
for seed in ${SEEDS:-0 1}; do
  bash $H/arm.sh ctl_s$seed $seed
  bash $H/arm.sh scaleout_s$seed $seed $SCALEOUT
done
echo ALL-DONE
