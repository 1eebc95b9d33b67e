#!/bin/bash
# skip035.sh's second seed: seed 1 from scratch to 3600 steps with x0_skip_sigma 0.035, and seed 1's recipe start
# (seed1.sh's group_s1_3600) generated beside it; 32 cases each.
set -eu
. /tmp/venv/bin/activate
export MANIFEST=/work/s45/manifest512.json ROOT=/work/s45/anat RUNS=/work/s45/runs
here=$(cd "$(dirname "$0")" && pwd)
bash /work/main/benchmarks/results/denoise_curve_cpu_20261202/small_4mm/run.sh skip035_s1_3600 3600 --set train.ckpt_every=1200 --set objective.x0_skip_sigma=0.035 --set seed=1 > $RUNS/skip035_s1_3600.train.log 2>&1
for m in skip035_s1_3600 group_s1_3600; do
  medidiff generate --model $RUNS/$m/model --num 32 --seed 0 --out /work/s45/gen/$m --overwrite --no-progress > "$here/$m.gen.log" 2>&1
done
echo skip035-s1-done
