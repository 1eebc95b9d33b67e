#!/bin/bash
# the two readings of README.md's first rows, as run (session 52): tumour_free.py on the first 96 held-out cases and the
# shipped model's 48 untailed CPU cases; zprofile.py on the same (its rows.json copied here as tumour_free_rows.json)
set -eu
. /tmp/venv/bin/activate
R=/work/main/benchmarks/results/tumour_free_cpu_20261206
cd /work/s52
python $R/tumour_free.py /work/s51/config.yaml /work/s51/manifest.json /work/s47/anat1536 \
  /work/main/benchmarks/nets/anatomy1536_fold0/feature_net 96 /work/s46/gen48_tail0 /work/s52/tf > tf.log 2>&1
python $R/zprofile.py /work/s51/config.yaml /work/s51/manifest.json /work/s47/anat1536 96 /work/s46/gen48_tail0 \
  > zprofile2.txt 2> zprofile2.err
