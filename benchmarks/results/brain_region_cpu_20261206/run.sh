#!/bin/bash
# the Frechet reading before and after (region_frechet.py) on the sets of ../width_pair_cpu_20261206/
set -eu
. /tmp/venv/bin/activate
R=/work/main/benchmarks/results
cd /work/s51
/usr/bin/time -v python $R/brain_region_cpu_20261206/region_frechet.py $R/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml \
  $R/quality_scale_h200_20261205/manifest.json /work/s47/anat1536 $R/../nets/anatomy1536_fold0/feature_net \
  $R/frechet_reference_cpu_20261206/all_features.npz \
  joint_untailed=/work/s46/gen48_tail0 joint_tail1=/work/s46/gen48_tail1 \
  second_full=/work/s50/cpu/gen_x0_detail100_skip005_maskcond_seed1 second_w128=/work/s50/cpu/gen_x0_detail100_skip005_maskcond_w128_seed0 \
  > region_frechet.json 2> region_frechet.log
echo DONE >> region_frechet.log
