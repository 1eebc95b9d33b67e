#!/bin/bash
# session 53: ../bright_t1c_cpu_20261206/x0_bright.py (unchanged) on the two 2 mm models trained on the
# outside-the-tumour scale in ../quality_scaleout_h100_20261206/ (fetched in bf16), and on the shipped model again
# as a check that the held-out cases written here are session 52's (its x0_bright.json must come out identical).
# The data: the first 400 cases of the 1536-case anatomy set (case i depends only on seed and i), the lease's
# manifest (sha256 9e623571...) cut to them: the first 105 held-out cases in the same order, the first 16 of each
# kind among them (session 52's picks end at held-out index 101). 2 cores, about 3 minutes a model.
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
x0=$here/../bright_t1c_cpu_20261206/x0_bright.py
cd /work/s53
medidiff data anatomy anat400 --cases 400 --shape 120 120 78 --seed 0 --workers 2 --no-progress
python - <<'PY'
import json
m = json.load(open("/work/s53/lease/quality_scale/manifest.json"))
m["training"] = [c for c in m["training"] if int(c["case_id"].split("-")[2]) < 400]
m["numTraining"] = len(m["training"])
json.dump(m, open("/work/s53/manifest400.json", "w"), indent=1)
PY
for name in shipped scaleout_seed0 scaleout_seed1; do
    case $name in
        shipped) model=anatomy-2mm ;;
        *) model=/work/s53/lease/models/x0_detail100_labels_lll100_skip005_$name ;;
    esac
    python $x0 --model $model --data /work/s53/anat400 --manifest /work/s53/manifest400.json --cases 16 \
        --out /work/s53/x0b_$name > $here/x0_bright_$name.txt 2> $here/x0_bright_$name.log
    cp /work/s53/x0b_$name/x0_bright.json $here/x0_bright_$name.json
done
for name in shipped scaleout_seed0 scaleout_seed1; do
    python $here/../bright_t1c_cpu_20261206/differences.py $here/x0_bright_$name.json > $here/differences_$name.txt
done
