#!/bin/bash
# Session 44: the shipped 2 mm model with one tail step (generate --tail-steps 1), 16 cases (seeds 0-15), against
# its own 16 Heun-30 cases of session 40 (/work/s40/gen_heun30_16, the same seeds); both through evaluate's image task.
set -eu
. /tmp/venv/bin/activate
while ! grep -q "== done" /work/s44/run.log; do sleep 10; done
cd /work/main
echo "== generate $(date -u +%T)"
medidiff generate --model anatomy-2mm --num 16 --seed 0 --tail-steps 1 --out /work/s44/gen2mm_tail1 --no-progress
for s in heun30_16=/work/s40/gen_heun30_16 tail1_16=/work/s44/gen2mm_tail1; do
  n=${s%%=*}; d=${s#*=}
  echo "== evaluate $n $(date -u +%T)"
  medidiff evaluate --real /work/s40/manifest1536.json --root /work/s40/anat --synthetic $d --out /work/s44/eval_$n \
    -c benchmarks/results/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml \
    --feature-net benchmarks/nets/anatomy1536_fold0/feature_net --tasks image --seeds 0 --set eval.max_real=128 \
    --no-progress
done
echo "== done $(date -u +%T)"
