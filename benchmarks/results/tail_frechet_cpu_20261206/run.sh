#!/bin/bash
# Session 46: what the tail step's Frechet cut is made of, on CPU (2 cores). The shipped model's 16 cases with and
# without one tail step (same seeds), then ../frechet_gap_cpu_20261205/frechet_gap.py on each set with the
# background cleared (and calibrated), against the 512-case anatomy set's 128 + 128 real cases.
# Data: ../frechet_gap_cpu_20261205/README.md's first two commands, here in W.
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd); gap=$here/../frechet_gap_cpu_20261205
W=${W:-/work/s46}; cd $W
for t in 0 1; do   # 12-13 min a set
  medidiff generate --model anatomy-2mm --num 16 --seed 0 --sampler heun --tail-steps $t --out gen_tail$t \
    --overwrite --no-progress > gen_tail$t.log 2>&1
done
python $here/../speckle_tail_cpu_20261205/bg.py tail0=gen_tail0 tail1=gen_tail1 > $here/bg.jsonl
CONFIG=$here/../quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
NET=$here/../../nets/anatomy1536_fold0/feature_net
for t in 0 1; do
  python $gap/frechet_gap.py $CONFIG /work/s45/manifest512.json /work/s45/anat $NET gen_tail$t 128 \
    "background cleared" "background cleared, then whole brain calibrated" "whole brain calibrated, every modality" \
    > $here/gap_tail$t.json 2> $here/gap_tail$t.log
done
# then (added after the Frechet above ran): the realism checks of both sets, and the paired Frechet difference
python $here/realism2mm.py $here/realism tail0=gen_tail0 tail1=gen_tail1 > $here/real2mm.log 2>&1   # 1.1 min
python $here/tail_pair.py gen_tail0 gen_tail1 > $here/pair.json                                    # ~3 min
