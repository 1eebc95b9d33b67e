#!/bin/bash
# train-on-synthetic for the shipped model (anatomy-2mm = the scale's seed 2, bf16 export): its 64 CPU cases
# (case seeds 0..63, Heun 30; /work/s57/cpu/bf16_64 links the 64 finished cases of heun30_seed2_bf16), a smaller form of quality_scale's utility protocol (10 epochs,
# seed 0, 64 real cases a side: training and held-out; evaluate trains every segmenter itself), on the CPU (2 cores)
set -eu
. /tmp/venv/bin/activate
cd /work/s59/utility   # then: utility/ and run.log copied here; python summarise.py > summary.md
/usr/bin/time -v python -m medidiff evaluate --real /work/s53/lease/quality_scale/manifest.json --root /work/s53/anat1536 \
  --synthetic /work/s57/cpu/bf16_64 --out utility -c /work/main/benchmarks/results/quality_scaleout_seeds23_h100_20261207/configs/x0_detail100_labels_lll100_skip005_scaleout_seed2.yaml --device cpu --tasks utility --epochs 10 --seeds 0 \
  --no-progress --feature-net /work/main/benchmarks/nets/anatomy1536_fold0/feature_net --set eval.max_real=64 "$@"
