#!/bin/bash
# Session 46: what the tail step's Frechet cut is made of, on CPU (2 cores). The shipped model's cases with and
# without one tail step (same seeds), then ../frechet_gap_cpu_20261205/frechet_gap.py on each set with the
# background cleared (and calibrated), against the 512-case anatomy set's 128 + 128 real cases. The real data is
# read from /work/s45 (../frechet_gap_cpu_20261205/README.md's first two commands, run there; paths in the
# Python scripts); the generated sets go to W. Ran as separate calls in this order (gen logs copied here).
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd); gap=$here/../frechet_gap_cpu_20261205
W=${W:-/work/s46}; cd $W
gen() {  # tail steps, first seed, folder: 16 cases, 12-13 min
  /usr/bin/time -v medidiff generate --model anatomy-2mm --num 16 --seed $2 --sampler heun --tail-steps $1 \
    --out $3 --overwrite --no-progress > $3.log 2>&1
}
gen 0 0 gen_tail0; gen 1 0 gen_tail1
python $here/../speckle_tail_cpu_20261205/bg.py tail0=gen_tail0 tail1=gen_tail1 > $here/bg.jsonl
CONFIG=$here/../quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
NET=$here/../../nets/anatomy1536_fold0/feature_net
for t in 0 1; do  # 5-6 min each, 7.3 GB peak
  /usr/bin/time -v python $gap/frechet_gap.py $CONFIG /work/s45/manifest512.json /work/s45/anat $NET gen_tail$t 128 \
    "background cleared" "background cleared, then whole brain calibrated" "whole brain calibrated, every modality" \
    > $here/gap_tail$t.json 2> $here/gap_tail$t.log
done
python $here/realism2mm.py $here/realism tail0=gen_tail0 tail1=gen_tail1 > $here/real2mm.log 2>&1   # 1.1 min
python $here/tail_pair.py gen_tail0 gen_tail1 > $here/pair.json                                    # ~3 min
python $here/cleared_check.py tail0=gen_tail0 tail1=gen_tail1 > $here/cleared_check.jsonl
# 16 more cases a set (seeds 16-31), and the paired difference over all 32
gen 0 16 gen_tail0b; gen 1 16 gen_tail1b
python $here/tail_pair.py gen_tail0,gen_tail0b gen_tail1,gen_tail1b > $here/pair32.json
gen 0 32 gen_tail0c; gen 1 32 gen_tail1c   # 16 more a set (seeds 32-47), at the session's end
python $here/tail_pair.py gen_tail0,gen_tail0b,gen_tail0c gen_tail1,gen_tail1b,gen_tail1c > $here/pair48.json
# session 47: the 48 cases a set joined (gen48_tail{0,1}/case_0000-0047, links to the three folders in order) and
# frechet_gap.py's split of each (~12 min a set, 2 cores), then the pair with precision / recall / coverage (PRDC=1)
# (these ran as a script in /work/s46 with the same arguments under /usr/bin/time -v, paths spelled from
# benchmarks/results: the gap48 JSON's feature_net path differs in spelling, not in file)
for t in 0 1; do
  mkdir -p gen48_tail$t; i=0
  for s in "" b c; do for c in gen_tail$t$s/case_*; do ln -sfn $W/$c gen48_tail$t/$(printf case_%04d $i); i=$((i+1)); done; done
  python $gap/frechet_gap.py $CONFIG /work/s45/manifest512.json /work/s45/anat $NET gen48_tail$t 128 \
    "whole brain calibrated, every modality" "per region calibrated, every modality" "per region level only, every modality" \
    "tumour painted out (normal-brain median)" "per region calibrated, t1n only" "per region calibrated, t1c only" \
    "per region calibrated, t2w only" "per region calibrated, t2f only" > $here/gap48_tail$t.json 2> $here/gap48_tail$t.log
done
PRDC=1 python $here/tail_pair.py gen_tail0,gen_tail0b,gen_tail0c gen_tail1,gen_tail1b,gen_tail1c > $here/pair48_prdc.json
# then (session 47) frechet_gap.py's one-modality level-only variants on the same sets (~6 min a set; ran as a
# script in /work/s47 with the same arguments under /usr/bin/time -v, the logs' tails)
for t in 0 1; do
  python $gap/frechet_gap.py $CONFIG /work/s45/manifest512.json /work/s45/anat $NET gen48_tail$t 128 \
    "per region level only, t1n only" "per region level only, t1c only" "per region level only, t2w only" \
    "per region level only, t2f only" > $here/gap48lvl_tail$t.json 2> $here/gap48lvl_tail$t.log
done
