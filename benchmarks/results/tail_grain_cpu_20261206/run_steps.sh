#!/bin/bash
# session 54, after run.sh: the scaleout seed-0 model's grain under other samplers, the same case seeds 0-11:
# Euler 30 (no Heun correction) and Heun 60 (a finer grid to the end), both untailed, read as run.sh reads its sets
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. /tmp/venv/bin/activate
cd /work/s53
M=/work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0
medidiff generate --model $M --num 12 --seed 0 --sampler euler --steps 30 --tail-steps 0 \
  --out /work/s53/gen12_scaleout0_euler30 --no-progress > $here/gen_euler30.log 2>&1
python $here/realism.py $here/realism euler30=/work/s53/gen12_scaleout0_euler30 > $here/realism_euler30.log 2>&1
medidiff generate --model $M --num 12 --seed 0 --sampler heun --steps 60 --tail-steps 0 \
  --out /work/s53/gen12_scaleout0_heun60 --no-progress > $here/gen_heun60.log 2>&1
python $here/realism.py $here/realism heun60=/work/s53/gen12_scaleout0_heun60 > $here/realism_heun60.log 2>&1
