#!/bin/bash
# mask fidelity and the unlabelled-tumour check before and after (fidelity_before_after.py): the shipped joint model's
# 48 untailed CPU cases, the tracked feature net as the real segmenter, 96 real cases a side
set -eu
. /tmp/venv/bin/activate
R=/work/main/benchmarks/results/brain_region_cpu_20261206
cd /work/s51
for p in old new; do
  OLD=$([ $p = old ] && echo 1 || echo 0) /usr/bin/time -v python $R/fidelity_before_after.py evaluate --real manifest.json \
    --root /work/s47/anat1536 --synthetic /work/s46/gen48_tail0 --out fidelity_$p -c config.yaml --tasks fidelity \
    --feature-net /work/main/benchmarks/nets/anatomy1536_fold0/feature_net --seeds 0 --device cpu --no-progress \
    --set eval.max_real=96 --set "data.percentiles=[0.5, 99.5]" --set data.percentile_region=brain \
    --set data.percentile_top=1.0 > fidelity_$p.log 2>&1
done
echo DONE >> fidelity_new.log
