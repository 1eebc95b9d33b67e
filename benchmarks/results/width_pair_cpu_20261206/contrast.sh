#!/bin/bash
# after pair.sh: the paired tumour contrast (width_contrast.py)
set -eu
. /tmp/venv/bin/activate
while ! grep -q PAIR-DONE /work/s50/cpu/width_pair.log 2>/dev/null; do sleep 20; done
R=/work/main/benchmarks/results
cd /work/s50/cpu
/usr/bin/time -v python $R/width_pair_cpu_20261206/width_contrast.py $R/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml \
  $R/quality_scale_h200_20261205/manifest.json /work/s47/anat1536 128 \
  joint_shipped=/work/s46/gen_tail0,/work/s46/gen_tail0b,/work/s46/gen_tail0c \
  second_w128=gen_x0_detail100_skip005_maskcond_w128_seed0 second_full=gen_x0_detail100_skip005_maskcond_seed1 \
  > width_contrast.json 2> width_contrast.log
echo CONTRAST-DONE >> width_contrast.log
