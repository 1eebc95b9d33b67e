#!/bin/bash
# A 4 mm CPU arm of the shipped joint recipe (quality_scale's x0_detail100_labels_lll100_skip005, its resolved config
# from ../quality_scale_h200_20261205/configs/) with the 4 mm proxy's keys (../denoise_curve_cpu_20261202/small_4mm/run.sh),
# STEPS steps (default 1200), then ../bright_t1c_cpu_20261206/x0_bright.py on its model: the t1c tilt along z in its x0
# estimate of real tumour-free held-out cases. $1 arm name, $2 seed, rest: extra --set (the variant's keys).
set -eu
. /tmp/venv/bin/activate
arm=$1; seed=$2; shift 2
R=/work/main/benchmarks/results
C=$R/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
M=/work/s45/manifest512.json; D=/work/s45/anat; W=${W:-/work/s52/4mm}
mkdir -p $W/runs
echo "== $arm $(date -u +%T)"
medidiff train -c $C --set data.manifest=$M --set data.root=$D --set output_dir=$W/runs --set name=$arm \
  --set seed=$seed --set train.max_steps=${STEPS:-1200} --set train.max_minutes=90 --set train.device=cpu \
  --set train.compile=false --set train.data_on_device=false --set train.micro_batch=4 --set data.cache=memory \
  --set data.num_workers=0 --set train.precision=fp32 --set train.ckpt_every=${STEPS:-1200} \
  --set train.warmup_steps=20 --set train.log_every=25 --set "data.spacing=[4.0,4.0,3.9744]" \
  --set "data.roi=[40,48,40]" --set "net.channels=[16,32,64]" --set train.lr=1.0e-3 --overwrite --no-progress \
  "$@" > $W/runs/$arm.train.log 2>&1
echo "== $arm trained $(date -u +%T)"
python $R/bright_t1c_cpu_20261206/x0_bright.py --model $W/runs/$arm/model --data $D --manifest $M --cases 16 \
  --out $W/x0_$arm > $W/x0_$arm.txt 2> $W/x0_$arm.log
echo "== $arm read $(date -u +%T)"
