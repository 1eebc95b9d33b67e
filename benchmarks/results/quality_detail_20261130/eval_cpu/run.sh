. /work/venv/bin/activate
cd /tmp/qs
export OMP_NUM_THREADS=1
M=/tmp/dev/quality_scale/manifest.json
[ -f $M ] || M=/tmp/qs/manifest.json
C=/work/main/benchmarks/results/quality_detail_20261130/configs
date
for v in 1000; do
  [ -f gen_d$v/case_0007/seg.nii.gz ] || /usr/bin/time -v medidiff generate --model /work/s7/models/x0_detail${v}_seed0 --num 8 --seed 0 --out gen_d$v --device cpu --no-progress > gen_d$v.log 2>&1
  echo "gen $v exit $? $(date)"
done
for v in 1000 100; do
  /usr/bin/time -v medidiff evaluate --real $M --root data --synthetic gen_d$v --out s7_eval_d${v} --config $C/x0_detail${v}_seed0.yaml \
    --set eval.feature_net=/tmp/qs/s7_fnet --set eval.tissue_net=/tmp/qs/s7_tnet --device cpu --tasks image,tissue --seeds 0 --epochs 2 --steps 60 --no-progress > s7_eval_d$v.log 2>&1
  echo "eval $v exit $? $(date)"
done
echo DONE
