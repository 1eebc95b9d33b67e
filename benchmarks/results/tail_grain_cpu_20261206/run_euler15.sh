#!/bin/bash
# session 54, after run_steps.sh: Euler 15 (the grid's last non-zero time, shift(1/15), further from 0 than Euler 30's
# shift(1/30)): does ending the grid at a higher noise level take grain away? Same seeds, read as the other sets
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. /tmp/venv/bin/activate
cd /work/s53
medidiff generate --model /work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0 --num 12 --seed 0 \
  --sampler euler --steps 15 --tail-steps 0 --out /work/s53/gen12_scaleout0_euler15 --no-progress > $here/gen_euler15.log 2>&1
python $here/realism.py $here/realism euler15=/work/s53/gen12_scaleout0_euler15 > $here/realism_euler15.log 2>&1
