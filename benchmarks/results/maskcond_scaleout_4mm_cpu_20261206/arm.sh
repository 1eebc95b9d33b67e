#!/bin/bash
# A 4 mm CPU arm of the mask-conditioned second stage: the 2 mm recipe as quality_scale ran it in session 49
# (../representation_row_h100_20261206b/configs/, its resolved config) with the 4 mm proxy's keys
# (../denoise_curve_cpu_20261202/small_4mm/run.sh), STEPS steps (default 1200), then 32 cases drawn for the first
# 32 training-fold masks of the 512-case set (generate --masks MANIFEST: the folds the model trained on).
# $1 arm name, $2 seed, rest: extra --set (the variant's keys). W: the work folder (default /work/s49/4mm).
set -eu
. /tmp/venv/bin/activate
arm=$1; seed=$2; shift 2
C=/work/main/benchmarks/results/representation_row_h100_20261206b/configs/x0_detail100_skip005_maskcond_seed0.yaml
M=/work/s45/manifest512.json; D=/work/s45/anat; W=${W:-/work/s49/4mm}
mkdir -p $W/runs $W/gen
echo "== $arm $(date -u +%T)"
medidiff train -c $C --set data.manifest=$M --set data.root=$D --set output_dir=$W/runs --set name=$arm \
  --set seed=$seed --set train.max_steps=${STEPS:-1200} --set train.max_minutes=90 --set train.device=cpu \
  --set train.compile=false --set train.data_on_device=false --set train.micro_batch=4 --set data.cache=memory \
  --set data.num_workers=0 --set train.precision=fp32 --set train.ckpt_every=${STEPS:-1200} \
  --set train.warmup_steps=20 --set train.log_every=25 --set "data.spacing=[4.0,4.0,3.9744]" \
  --set "data.roi=[40,48,40]" --set "net.channels=[16,32,64]" --set train.lr=1.0e-3 --overwrite --no-progress \
  "$@" > $W/runs/$arm.train.log 2>&1
echo "== $arm trained $(date -u +%T)"
medidiff generate --model $W/runs/$arm/model --masks $M --root $D --num 32 --seed 0 --out $W/gen/$arm \
  --overwrite --no-progress > $W/runs/$arm.gen.log 2>&1
echo "== $arm generated $(date -u +%T)"
