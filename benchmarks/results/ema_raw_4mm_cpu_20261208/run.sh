#!/bin/bash
# session 64: at the 4 mm CPU proxy, does the run's EMA keep tumours that its raw last-step weights lose?
# The recipe at 4 mm (../denoise_curve_cpu_20261202/small_4mm/run.sh, constant lr 1e-3, 1200 steps, seed 0) on
# session 62's 256-case set; then 32 cases (Heun 30, case seeds 0-31) from the exported EMA model and from a copy of
# it holding the last checkpoint's raw weights.
set -eu
. /tmp/venv/bin/activate
cd /work/main
W=/work/s64/ema; mkdir -p $W/runs $W/gen
export MANIFEST=/work/s63/ft/manifest.json ROOT=/work/s62/anat256 RUNS=$W/runs
bash benchmarks/results/denoise_curve_cpu_20261202/small_4mm/run.sh const_s0 1200 --set seed=0 > $W/const_s0.train.log 2>&1
echo "trained $(date -u +%T)"
# then (not in this script), from the repository root: python /work/s64/ema/raw_vs_ema.py /work/s64/ema/runs/const_s0
# /work/s64/ema/raw_vs_ema.json (this folder's raw_vs_ema.py; it writes the raw-weight model copy beside its OUT, so
# give an OUT outside the repository; the run folder and the copy are scratch, not kept)
