#!/bin/bash
# the shipped model's 96 untailed CPU cases (seeds 0-47: session 50's /work/s46/gen48_tail0; 48-95: this session's
# /work/s52/gen48b_tail0, `medidiff generate --model anatomy-2mm --num 48 --seed 48 --sampler heun --tail-steps 0`,
# 38:25 wall on 2 cores beside other work) through frechet96.py
set -eu
. /tmp/venv/bin/activate
R=/work/main/benchmarks/results
cd /work/s52
/usr/bin/time -v python $R/frechet96_cpu_20261206/frechet96.py $R/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml \
  $R/quality_scale_h200_20261205/manifest.json /work/s47/anat1536 $R/../nets/anatomy1536_fold0/feature_net \
  $R/frechet_reference_cpu_20261206/all_features.npz /work/s46/gen48_tail0 /work/s52/gen48b_tail0 \
  > $R/frechet96_cpu_20261206/frechet96.json 2> $R/frechet96_cpu_20261206/frechet96.log
echo DONE >> $R/frechet96_cpu_20261206/frechet96.log
