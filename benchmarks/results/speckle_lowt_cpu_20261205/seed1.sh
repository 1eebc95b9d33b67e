#!/bin/bash
set -eu
. /tmp/venv/bin/activate
export MANIFEST=/work/s45/manifest512.json ROOT=/work/s45/anat RUNS=/work/s45/runs
bash /work/main/benchmarks/results/denoise_curve_cpu_20261202/small_4mm/run.sh group_s1_3600 3600 --set train.ckpt_every=1200 --set seed=1 > $RUNS/group_s1_3600.train.log 2>&1
SEED=1 ARMS="ctl mean05" bash /work/main/benchmarks/results/speckle_lowt_cpu_20261205/finetune_arms.sh
echo seed1-done
