#!/bin/bash
# mask fidelity with the unlabelled-tumour check read by kind (tumour-free / with a tumour): the shipped joint
# model's 48 untailed CPU cases (session 50), the tracked feature net as the real segmenter, 96 real cases a side
set -eu
. /tmp/venv/bin/activate
cd /work/s52
/usr/bin/time -v medidiff evaluate --real /work/s51/manifest.json --root /work/s47/anat1536 --synthetic /work/s46/gen48_tail0 \
  --out fidelity_strata -c /work/s51/config.yaml --tasks fidelity \
  --feature-net /work/main/benchmarks/nets/anatomy1536_fold0/feature_net --seeds 0 --device cpu --no-progress \
  --set eval.max_real=96 --set "data.percentiles=[0.5, 99.5]" --set data.percentile_region=brain \
  --set data.percentile_top=1.0 > fidelity_strata.log 2>&1
echo DONE >> fidelity_strata.log
