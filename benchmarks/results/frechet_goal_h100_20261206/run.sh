#!/bin/bash
# Session 47's second lease (the end of the session's device time): the shipped model's 96 cases a set without
# and with one tail step (noise seeds 5000-5095, as ../tail_pair_h200_20261206/run.sh drew them), and
# their features on the tracked net (gen_features.py), brought back to be read against the whole training fold
# (../frechet_reference_cpu_20261206/all_features.npz) on the development machine (read.py).
#   mkdir -p /tmp/fgout && JOB_OUT=/tmp/fgout setsid nohup bash run.sh > /tmp/fgout/log 2>&1 &
set -eu
here=$(cd "$(dirname "$0")" && pwd)
R=$here/..
out=${JOB_OUT:?}; W=/tmp/fg; mkdir -p "$W" "$out"
export DATA=$W THREADS=16 PYTHONUNBUFFERED=1
cd $W
stamp() { echo "== $* $(date -u +%FT%TZ)"; }
stamp data  # 64 cases suffice for the pipeline (gen_features.py loads one real case)
python3 -m medidiff data anatomy anat --cases 64 --shape 120 120 78 --seed 0 --workers 16 --no-progress > "$out/data.log" 2>&1
python3 -c "import json; m = json.load(open('$R/quality_scale_h200_20261205/manifest.json')); \
  m['training'] = m['training'][:64]; m['numTraining'] = 64; json.dump(m, open('manifest512.json', 'w'))"
for t in 0 1; do
  stamp "generate shipped_tail$t"
  python3 -m medidiff generate --model anatomy-2mm --num 96 --seed 5000 --sampler heun --tail-steps $t \
    --device cuda --batch 8 --out shipped_tail$t --overwrite --no-progress > "$out/shipped_tail$t.log" 2>&1
done
stamp features
python3 "$here/gen_features.py" "$out/gen_features.npz" tail0=shipped_tail0 tail1=shipped_tail1 > "$out/features.log" 2>&1
stamp "JOB DONE"
