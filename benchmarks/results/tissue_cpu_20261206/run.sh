#!/bin/bash
# session 53: tissue QC of the shipped model's 48 untailed CPU cases on evaluate's corrected scale, a tissue segmenter
# trained here on the CPU (4 epochs at most, 192 real training cases of the 1536-case set with its tissue maps)
set -eu
. /tmp/venv/bin/activate
cd /work/s53
# the shipped model's cases: seeds 0-47, as session 50's gen48_tail0 (48 s a case on 2 cores)
medidiff generate --model anatomy-2mm --num 48 --seed 0 --sampler heun --tail-steps 0 --out /work/s53/tissue/gen48 --no-progress
# the 1536-case anatomy set (evaluate refuses a manifest other than the model's: the lease's, sha256 9e623571...)
medidiff data anatomy anat1536 --cases 1536 --shape 120 120 78 --seed 0 --workers 2 --no-progress
C=/work/main/benchmarks/results/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
medidiff evaluate --real /work/s53/lease/quality_scale/manifest.json --root /work/s53/anat1536 --synthetic /work/s53/tissue/gen48 \
  --out /work/s53/tissue/eval_tissue --config $C --tasks tissue --device cpu --epochs 4 --seeds 0 \
  --tissue-net /work/s53/tissue/tnet --set eval.max_real=192 --no-progress > /work/s53/tissue/eval_tissue.log 2>&1
