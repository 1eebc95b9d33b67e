#!/bin/bash
# The fetched pixel-norm model (models.tar of this lease, not kept) through ../../x0_spread_cpu_20261205/x0_spread.py
# on the 32 held-out cases the shipped net was read on (session 40's 512-case CPU manifest, data not kept); 17 min
# on 2 cores beside a CPU training run.
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
cd /work/main
python $here/../../x0_spread_cpu_20261205/x0_spread.py --model /work/s42/lease/models/x0_detail100_labels_lll100_skip005_pixelnorm_seed0 \
  --data /work/s40/anat --manifest /work/s40/manifest512.json --cases 32 --out /work/s42/x0_pixel2mm > $here/x0_spread.log 2>&1
cp /work/s42/x0_pixel2mm/x0_spread.json $here/x0_spread.json
