#!/bin/bash
# Session 45, second pass: does the speckle keep growing with steps under the lower-noise-starved times? ft_ctl
# and ft_mean05 (finetune_arms.sh) continued from their own 4800-step checkpoints to 7200 steps, each under its
# own objective (so no edit), then 32 cases each as before.
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
export MANIFEST=/work/s45/manifest512.json ROOT=/work/s45/anat RUNS=/work/s45/runs
declare -A sets=([ctl]="" [mean05]="--set objective.logit_mean=0.5")
for arm in ${ARMS:-ctl mean05}; do
  name=ft_${arm}_7200
  echo "== $name $(date -u +%T)"
  rm -rf $RUNS/$name; mkdir -p $RUNS/$name/checkpoints
  cp -r $RUNS/ft_${arm}_4800/codec $RUNS/$name/; cp -r $RUNS/ft_${arm}_4800/checkpoints/step_00004800 $RUNS/$name/checkpoints/
  RESUME=1 bash $here/../denoise_curve_cpu_20261202/small_4mm/run.sh $name 7200 --set train.ckpt_every=1200 ${sets[$arm]} > $RUNS/$name.train.log 2>&1
  grep -q "trained 7200" $RUNS/$name.train.log
  cp $RUNS/$name.train.log "$here/"
  medidiff generate --model $RUNS/$name/model --num 32 --seed 0 --out /work/s45/gen/$name --overwrite \
    --no-progress > "$here/$name.gen.log" 2>&1
done
echo "== done $(date -u +%T)"
