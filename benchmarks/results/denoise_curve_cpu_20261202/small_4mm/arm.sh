#!/bin/bash
# One 4 mm CPU arm: run.sh's 1200 steps, then 32 cases (seed 0, the model's sampler: Heun 30), logs in $RUNS.
# $1 arm name, rest: extra --set; MANIFEST, ROOT and RUNS as run.sh. Used by the arms of
# ../../brain_detail_cpu_20261202/run.sh and ../../t1c_histogram_cpu_20261203/run.sh.
set -eu
arm=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
echo "== $arm $(date -u +%T)"
bash "$here/run.sh" "$arm" 1200 "$@" > "$RUNS/$arm.train.log" 2>&1
medidiff generate --model "$RUNS/$arm/model" --num 32 --seed 0 --out "$RUNS/../gen/$arm" --overwrite --no-progress \
  > "$RUNS/$arm.gen.log" 2>&1
echo "== $arm done $(date -u +%T)"
