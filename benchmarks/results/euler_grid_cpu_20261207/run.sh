#!/bin/bash
# session 55: Euler 20 and 24 on the scaleout seed-0 model, case seeds 0-11 as ../tail_grain_cpu_20261206/ (where
# Euler 15 lost the grain in three modalities for blur and Euler 30 kept it): where between them does the grain go,
# and does the blur come with it? Read as that record reads its sets (its realism.py, copied here with the config it reads, 96 real a side)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. /tmp/venv/bin/activate
cd /work/s53
for n in 20 24; do
  medidiff generate --model /work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0 --num 12 --seed 0 \
    --sampler euler --steps $n --tail-steps 0 --out /work/s53/gen12_scaleout0_euler$n --no-progress > $here/gen_euler$n.log 2>&1
  python $here/realism.py $here/realism euler$n=/work/s53/gen12_scaleout0_euler$n > $here/realism_euler$n.log 2>&1
done
echo DONE
