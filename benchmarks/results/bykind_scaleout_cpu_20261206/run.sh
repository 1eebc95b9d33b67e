#!/bin/bash
# session 53: the by-kind unlabelled-tumour check (evaluate's fidelity task, as ../tumour_free_cpu_20261206/run_fidelity.sh:
# the tracked feature net as the real segmenter, 96 real cases a side, evaluate's scale) on the scaleout seed-0 model's
# CPU cases beside the shipped model's
set -eu
. /tmp/venv/bin/activate
cd /work/s53
# 32 planned, stopped after 25 for the session's time (case_0000-0024, each complete): 48 s a case on 2 cores
medidiff generate --model /work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed0 --num 32 --seed 0 \
  --sampler heun --tail-steps 0 --out /work/s53/gen32_scaleout0 --no-progress
C=/work/main/benchmarks/results/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
fid() {  # synthetic folder, out, extra --set
  medidiff evaluate --real /work/s53/lease/quality_scale/manifest.json --root /work/s53/anat1536 --synthetic $1 \
    --out $2 -c $C --tasks fidelity --feature-net /work/main/benchmarks/nets/anatomy1536_fold0/feature_net --seeds 0 \
    --device cpu --no-progress --set eval.max_real=96 --set "data.percentiles=[0.5, 99.5]" \
    --set data.percentile_region=brain --set data.percentile_top=1.0 "${@:3}" > $2.log 2>&1
}
fid /work/s53/gen32_scaleout0 /work/s53/fid_scaleout0
fid /work/s53/tissue/gen48 /work/s53/fid_shipped                                 # ../tissue_cpu_20261206's 48 cases
fid /work/s53/tissue/gen48 /work/s53/fid_shipped25 --set eval.max_synthetic=25   # its first 25: the same seeds
here=$(cd "$(dirname "$0")" && pwd)
python $here/bykind.py shipped_48=/work/s53/fid_shipped/report.json shipped_25=/work/s53/fid_shipped25/report.json \
  scaleout_seed0_25=/work/s53/fid_scaleout0/report.json > $here/bykind.txt
