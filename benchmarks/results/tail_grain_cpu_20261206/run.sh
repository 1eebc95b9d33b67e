#!/bin/bash
# session 54: does one tail step take the outside-the-tumour scale's grain away? The scaleout seed-0 model (session 53's
# lease, bf16) generates case seeds 0-11 with one tail step (Heun 30 + 1), beside its untailed cases of the same seeds
# (../bykind_scaleout_cpu_20261206/run.sh's gen32_scaleout0, case_0000-0011 via eval.max_synthetic=12), and both are
# read by evaluate's realism checks (detail coherence, spectrum, background, histograms) against 96 real a side
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. /tmp/venv/bin/activate
cd /work/s53
medidiff generate --model /work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0 --num 12 --seed 0 \
  --sampler heun --tail-steps 1 --out /work/s53/gen12_scaleout0_tail1 --no-progress > $here/gen_tail1.log 2>&1
python $here/realism.py $here/realism tail0=/work/s53/gen32_scaleout0 tail1=/work/s53/gen12_scaleout0_tail1 > $here/realism.log 2>&1
