#!/bin/bash
# Session 45, last pass: the x0 skip's sigma at 0.035 instead of 0.05 (how much of its input the net passes near
# t = 0), trained from scratch to 3600 steps, seed 0 (against group_s0_3600), then 32 cases.
set -eu
. /tmp/venv/bin/activate
export MANIFEST=/work/s45/manifest512.json ROOT=/work/s45/anat RUNS=/work/s45/runs
bash /work/main/benchmarks/results/denoise_curve_cpu_20261202/small_4mm/run.sh skip035_s0_3600 3600 --set train.ckpt_every=1200 --set objective.x0_skip_sigma=0.035 > $RUNS/skip035_s0_3600.train.log 2>&1
medidiff generate --model $RUNS/skip035_s0_3600/model --num 32 --seed 0 --out /work/s45/gen/skip035_s0_3600 --overwrite --no-progress > /work/s45/rec/skip035_s0_3600.gen.log 2>&1
echo skip035-done
