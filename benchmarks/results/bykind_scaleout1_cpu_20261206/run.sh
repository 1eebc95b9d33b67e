#!/bin/bash
# session 54: the by-kind unlabelled-tumour check on the scaleout SEED-1 model's first 25 CPU cases (seeds 0-24), the
# same instrument and settings as ../bykind_scaleout_cpu_20261206/run.sh (seed 0), whose bykind.py reads all the reports
set -eu
here=$(cd "$(dirname "$0")" && pwd)  # (first ran after the cd below: the last three lines were run again from here)
. /tmp/venv/bin/activate
cd /work/s53
medidiff generate --model /work/s53/lease/models/x0_detail100_labels_lll100_skip005_scaleout_seed1 --num 25 --seed 0 \
  --sampler heun --tail-steps 0 --out /work/s53/gen25_scaleout1 --no-progress
C=/work/main/benchmarks/results/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
medidiff evaluate --real /work/s53/lease/quality_scale/manifest.json --root /work/s53/anat1536 \
  --synthetic /work/s53/gen25_scaleout1 --out /work/s53/fid_scaleout1 -c $C --tasks fidelity \
  --feature-net /work/main/benchmarks/nets/anatomy1536_fold0/feature_net --seeds 0 --device cpu --no-progress \
  --set eval.max_real=96 --set "data.percentiles=[0.5, 99.5]" --set data.percentile_region=brain \
  --set data.percentile_top=1.0 > /work/s53/fid_scaleout1.log 2>&1
s0=$here/../bykind_scaleout_cpu_20261206
cp /work/s53/fid_scaleout1/report.json $here/report_scaleout_seed1_25.json
python $s0/bykind.py shipped_48=$s0/report_shipped_48.json shipped_25=$s0/report_shipped_25.json \
  scaleout_seed0_25=$s0/report_scaleout_seed0_25.json scaleout_seed1_25=$here/report_scaleout_seed1_25.json > $here/bykind.txt
