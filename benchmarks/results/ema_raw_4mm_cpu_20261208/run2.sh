#!/bin/bash
# session 64, second arm: the same 4 mm run (seed 0, so on the CPU the same raw weight trajectory) with a longer EMA:
# warm-up none, max decay 0.997 (about the last 330 steps of 1200; the initial weights keep 0.997^1200 = 2.7 %)
set -eu
. /tmp/venv/bin/activate
cd /work/main
W=/work/s64/ema; mkdir -p $W/runs
export MANIFEST=/work/s63/ft/manifest.json ROOT=/work/s62/anat256 RUNS=$W/runs
bash benchmarks/results/denoise_curve_cpu_20261202/small_4mm/run.sh ema997_s0 1200 --set seed=0 \
  --set train.ema.warmup=none --set train.ema.max_decay=0.997 > $W/ema997_s0.train.log 2>&1
echo "trained $(date -u +%T)"
