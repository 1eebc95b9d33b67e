#!/bin/bash
# How the bf16 set read by read_bf16.py was made (session 57, the 2-core development machine, code at d93c2e2): the
# job's bf16 export of seed 2 (FETCH; kept off the repository in outputs/scaleout_seed2) under its own sampler
# (Heun 30), case seeds from 0. Asked for 96; stopped once 64 had finished (about 43 s a case alone, far slower while
# the local CI shared the 2 cores, so the job was paused during the CI), so the read is of cases 0..63, linked into
# their own folder (an interrupted case 64 has no provenance and is not linked).
set -eu
model=/work/s57/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed2
medidiff generate --model $model --num 96 --seed 0 --device cpu --out /work/s57/cpu/heun30_seed2_bf16 --no-progress \
  > /work/s57/cpu/gen.log 2>&1 || true   # stopped with pkill after case 63
mkdir -p /work/s57/cpu/bf16_64
for i in $(seq 0 63); do
  ln -sfn /work/s57/cpu/heun30_seed2_bf16/$(printf case_%04d $i) /work/s57/cpu/bf16_64/
done
python3 read_bf16.py /work/s57/cpu/bf16_64 > read_bf16.log 2>&1   # checks case i is case seed i
