#!/bin/bash
# How the seed-0 Euler-20 set read by read_cpu.py was made (session 56, the 2-core development machine, code at
# c61837e): cases 0-11 are ../../euler_grid_cpu_20261207/'s set (its run.sh: --seed 0 --num 12, --tail-steps 0 = the
# model's own); 12-191 generated here (about 15 s a case). generate names cases by index (--seed 12 writes its first
# case as case_0000), so the 192-case folder links them in seed order, and the provenance's seeds are checked.
set -eu
model=/work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0   # session 53's bf16 export (not kept)
medidiff generate --model $model --sampler euler --steps 20 --num 180 --seed 12 --device cpu \
  --out /work/s56/cpu/euler20_rest --no-progress > gen_euler20_rest.log 2>&1
mkdir -p /work/s56/cpu/euler20_192
for i in $(seq 0 11); do
  ln -sfn /work/s53/gen12_scaleout0_euler20/$(printf case_%04d $i) /work/s56/cpu/euler20_192/$(printf case_%04d $i)
done
for i in $(seq 0 179); do
  ln -sfn /work/s56/cpu/euler20_rest/$(printf case_%04d $i) /work/s56/cpu/euler20_192/$(printf case_%04d $((i + 12)))
done
python3 -c "
import json, os
d = '/work/s56/cpu/euler20_192'
cases = sorted(os.listdir(d))
bad = [c for i, c in enumerate(cases) if json.load(open(f'{d}/{c}/provenance.json'))['seed'] != i]
print(len(cases), 'cases; seed mismatches:', bad)
assert not bad"
python3 read_cpu.py /work/s56/cpu/euler20_192 . > read_cpu.log 2>&1          # features, Frechet, both realism readings
python3 read_cpu.py /work/s56/cpu/euler20_192 . --image-only > read_cpu_image.log 2>&1  # rerun after image.json gained the jackknife rows
