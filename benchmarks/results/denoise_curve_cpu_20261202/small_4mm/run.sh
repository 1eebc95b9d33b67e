#!/bin/bash
# $1 arm name, $2 steps, rest: extra --set; MANIFEST, ROOT and RUNS name other data and run folders;
# RESUME=1 continues the run from its checkpoint (--resume) instead of starting over (--overwrite)
# (defaults: session 19's, which made this folder's arms; rim_denoise_cpu_20261202/small_4mm_edge3 used others)
arm=$1; steps=$2; shift 2
mode=--overwrite; [ "${RESUME:-0}" = 1 ] && mode=--resume
medidiff train -c /work/main/configs/anatomy_2mm.yaml --set data.manifest=${MANIFEST:-/work/anat/manifest.json} \
  --set data.root=${ROOT:-/work/anat/data} --set output_dir=${RUNS:-/work/s19/small/runs} --set name=$arm --set train.max_steps=$steps \
  --set train.compile=false \
  --set train.data_on_device=false --set train.micro_batch=4 --set data.cache=memory --set data.num_workers=0 \
  --set train.precision=fp32 --set train.ckpt_every=$steps --set train.warmup_steps=20 --set train.log_every=25 \
  --set "data.spacing=[4.0,4.0,3.9744]" --set "data.roi=[40,48,40]" --set "net.channels=[16,32,64]" \
  --set train.lr=1.0e-3 $mode --no-progress "$@"
