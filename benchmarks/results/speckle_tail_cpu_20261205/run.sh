#!/bin/bash
# Session 44 (CPU, 4 mm): does the brain-size spread keep widening past 3x the steps? The shipped recipe at 4 mm
# (../denoise_curve_cpu_20261202/small_4mm/run.sh), GroupNorm seeds 0 and 1, resumed from their 3600-step
# checkpoints (spread_norm_cpu_20261205's group_s*_3600; constant learning rate, so a resume continues the same run)
# to 7200 steps (6x the 1200-step arms), then 32 cases each (seed 0 noise, as every arm) and the spread check.
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
export MANIFEST=/work/s40/manifest512.json ROOT=/work/s40/anat RUNS=/work/s42/small/runs
for s in 0 1; do
  arm=group_s${s}_7200
  echo "== $arm $(date -u +%T)"
  # small_4mm/run.sh's command without its --overwrite (which would delete the checkpoint to resume from)
  medidiff train -c /work/main/configs/anatomy_2mm.yaml --set data.manifest=$MANIFEST --set data.root=$ROOT \
    --set output_dir=$RUNS --set name=$arm --set train.max_steps=7200 --set train.compile=false \
    --set train.data_on_device=false --set train.micro_batch=4 --set data.cache=memory --set data.num_workers=0 \
    --set train.precision=fp32 --set train.ckpt_every=3600 --set train.warmup_steps=20 --set train.log_every=25 \
    --set "data.spacing=[4.0,4.0,3.9744]" --set "data.roi=[40,48,40]" --set "net.channels=[16,32,64]" \
    --set train.lr=1.0e-3 --set seed=$s --resume --no-progress > $RUNS/$arm.train.log 2>&1 || true
  grep -q "trained 7200" $RUNS/$arm.train.log
  cp $RUNS/$arm.train.log "$here/$arm.train.log"
  echo "== generate $arm $(date -u +%T)"
  medidiff generate --model $RUNS/$arm/model --num 32 --seed 0 --out /work/s42/small/gen/$arm --overwrite \
    --no-progress > "$here/$arm.gen.log" 2>&1
done
echo "== done $(date -u +%T)"
# Then (by hand, this folder's scripts; G=/work/s42/small/gen, R=/work/s42/small/runs):
#   python bg.py group_s0=$G/group_s0 ... group_s1_7200=$G/group_s1_7200 ... > bg.jsonl   (group_s0: /work/s41/small/runs/lll1)
#   python bg_curve.py --data /work/s40/anat --manifest /work/s40/manifest512.json --cases 8 --out OUT \
#     group_s0=/work/s41/small/runs/lll1/model group_s0_3600=$R/group_s0_3600/model group_s0_7200=$R/group_s0_7200/model
#   python bg_path.py --seeds 0 1 2 3 --out OUT (the same three models)
#   python grid_tail.py --seeds 8 --out OUT group_s0_7200=$R/group_s0_7200/model group_s0=/work/s41/small/runs/lll1/model
#   python grid_tail.py --seeds 8 --out OUT shipped=medidiff/pretrained/anatomy_2mm
#   medidiff generate --model $R/group_s0_7200/model --num 8 --seed 0 --steps 60 (and 120) --out ...
#   tail2mm.sh: the shipped 2 mm model with --tail-steps 1 against its plain Heun 30 cases, through evaluate's image task
