#!/bin/bash
# A 4 mm CPU arm of the mask-conditioned second stage: session 37's 2 mm recipe (its resolved config) with the
# 4 mm proxy's keys (denoise_curve_cpu_20261202/small_4mm/run.sh), 1200 steps, then the paired reading on 16 masks.
# $1 arm name, rest: extra --set
set -eu
. /tmp/venv/bin/activate
arm=$1; shift
C=/work/main/benchmarks/results/quality_scale_h200_20261204g/configs/x0_detail100_skip005_maskcond_seed0.yaml
R=/work/s38/runs
mkdir -p $R
echo "== $arm $(date -u +%T)"
medidiff train -c $C --set data.manifest=/work/s38/anat_manifest.json --set data.root=/work/s38/anat \
  --set output_dir=$R --set name=$arm --set train.max_steps=${STEPS:-1200} --set train.max_minutes=60 \
  --set train.device=cpu --set train.compile=false --set train.data_on_device=false --set train.micro_batch=4 \
  --set data.cache=memory --set data.num_workers=0 --set train.precision=fp32 --set train.ckpt_every=${STEPS:-1200} \
  --set train.warmup_steps=20 --set train.log_every=25 --set "data.spacing=[4.0,4.0,3.9744]" \
  --set "data.roi=[40,48,40]" --set "net.channels=[16,32,64]" --set train.lr=1.0e-3 --overwrite --no-progress \
  "$@" > $R/$arm.train.log 2>&1
echo "== $arm trained $(date -u +%T)"
python /work/main/benchmarks/paired_contrast.py --model $R/$arm/model --config $R/$arm/resolved_config.yaml \
  --manifest /work/s38/anat_manifest.json --root /work/s38/anat --num 16 --out /work/s38/paired/$arm > $R/$arm.paired.log 2>&1
echo "== $arm done $(date -u +%T)"
