#!/bin/bash
# $1 arm name, $2 steps, rest: extra --set (the 4 mm small-scale recipe of denoise_curve_cpu_20261202/small_4mm/run.sh)
arm=$1; steps=$2; shift 2
medidiff train -c /work/main/configs/anatomy_2mm.yaml --set data.manifest=/work/s22/anat_manifest.json --set data.root=/work/s22/anat \
  --set output_dir=/work/s22/small/runs --set name=$arm --set train.max_steps=$steps --set train.compile=false \
  --set train.data_on_device=false --set train.micro_batch=4 --set data.cache=memory --set data.num_workers=0 \
  --set train.precision=fp32 --set train.ckpt_every=$steps --set train.warmup_steps=20 --set train.log_every=25 \
  --set "data.spacing=[4.0,4.0,3.9744]" --set "data.roi=[40,48,40]" --set "net.channels=[16,32,64]" \
  --set train.lr=1.0e-3 --overwrite --no-progress "$@"
