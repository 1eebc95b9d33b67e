#!/bin/bash
# Session 50: both fetched second stages (w128 seed 0, full-size seed 1; H100 lease, 8 min side by side) on the
# shipped joint model's 48 CPU label maps (/work/s46/gen48_tail0), same seeds (48-95; the labels came from seeds 0-47): the width's cost, paired.
set -eu
. /tmp/venv/bin/activate
cd /work/s50/cpu
for m in x0_detail100_skip005_maskcond_w128_seed0 x0_detail100_skip005_maskcond_seed1; do
  echo "== $m $(date -u +%T)"
  /usr/bin/time -v medidiff generate --model /work/s50/lease/models/$m --masks /work/s50/cpu/masks48 --num 48 \
    --seed 48 --sampler heun --out gen_$m --overwrite --no-progress > gen_$m.log 2>&1
done
echo "== GEN-DONE $(date -u +%T)"
