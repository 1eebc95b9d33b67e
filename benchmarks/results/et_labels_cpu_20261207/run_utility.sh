#!/bin/bash
# the ET-drop test: utility_shipped_cpu_20261207's command on the t1c-matched copy of its 64 cases (match_t1c.py)
set -eu
. /tmp/venv/bin/activate
cd /work/s60/et
/usr/bin/time -v python -m medidiff evaluate --real /work/s53/lease/quality_scale/manifest.json --root /work/s53/anat1536 \
  --synthetic /work/s60/et/matched64 --out utility_matched -c /work/main/benchmarks/results/quality_scaleout_seeds23_h100_20261207/configs/x0_detail100_labels_lll100_skip005_scaleout_seed2.yaml --device cpu --tasks utility --epochs 10 --seeds 0 \
  --no-progress --feature-net /work/main/benchmarks/nets/anatomy1536_fold0/feature_net --set eval.max_real=64 "$@"
