#!/bin/bash
# the realism checks before and after (realism_before_after.py): the shipped joint model untailed and the
# full-size second stage (../width_pair_cpu_20261206/'s sets), 128 real cases a side
set -eu
. /tmp/venv/bin/activate
cd /work/s51
/usr/bin/time -v python /work/main/benchmarks/results/brain_region_cpu_20261206/realism_before_after.py config.yaml manifest.json /work/s47/anat1536 128 \
  joint_untailed=/work/s46/gen48_tail0 second_full=/work/s50/cpu/gen_x0_detail100_skip005_maskcond_seed1 \
  > realism_before_after.json 2> realism_before_after.log
echo DONE >> realism_before_after.log
