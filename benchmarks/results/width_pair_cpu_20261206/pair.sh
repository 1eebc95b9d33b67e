#!/bin/bash
# after gen.sh: the paired Frechet reading (width_pair.py)
set -eu
. /tmp/venv/bin/activate
while ! grep -q GEN-DONE /work/s50/cpu/gen.out; do sleep 20; done
R=/work/main/benchmarks/results
cd /work/s50/cpu
/usr/bin/time -v python $R/width_pair_cpu_20261206/width_pair.py $R/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml \
  $R/quality_scale_h200_20261205/manifest.json /work/s47/anat1536 $R/../nets/anatomy1536_fold0/feature_net \
  $R/frechet_reference_cpu_20261206/all_features.npz \
  second_w128=gen_x0_detail100_skip005_maskcond_w128_seed0 second_full=gen_x0_detail100_skip005_maskcond_seed1 \
  > width_pair.json 2> width_pair.log
echo PAIR-DONE >> width_pair.log
