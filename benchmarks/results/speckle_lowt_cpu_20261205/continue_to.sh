#!/bin/bash
# Session 46: continue a 4 mm run from its last checkpoint to more steps under its own objective, then 32 cases.
#   bash continue_to.sh SRC_RUN NEW_NAME STEPS [--set ... of SRC_RUN's arm]
# (small_4mm/run.sh with RESUME=1; the lr is constant, so a resume only extends the run)
set -eu
. /tmp/venv/bin/activate
src=$1; name=$2; steps=$3; shift 3
here=$(cd "$(dirname "$0")" && pwd)
export MANIFEST=/work/s45/manifest512.json ROOT=/work/s45/anat RUNS=/work/s45/runs
last=$(ls -d $RUNS/$src/checkpoints/step_* | sort | tail -1)
echo "== $name from $last $(date -u +%T)"
rm -rf $RUNS/$name; mkdir -p $RUNS/$name/checkpoints
cp -r $RUNS/$src/codec $RUNS/$name/; cp -r $last $RUNS/$name/checkpoints/
RESUME=1 bash $here/../denoise_curve_cpu_20261202/small_4mm/run.sh $name $steps --set train.ckpt_every=1200 "$@" > $RUNS/$name.train.log 2>&1
grep -q "trained $steps" $RUNS/$name.train.log
cp $RUNS/$name.train.log "$here/"
medidiff generate --model $RUNS/$name/model --num 32 --seed 0 --out /work/s45/gen/$name --overwrite \
  --no-progress > "$here/$name.gen.log" 2>&1
echo "== done $name $(date -u +%T)"
