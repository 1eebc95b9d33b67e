#!/bin/bash
# The brain mask's tumour cost at small scale (4 mm, CPU): is it the brain mask's detail sub-bands, which
# objective.detail_weight 100 weighs like the images' (the brain's surface is far larger than a tumour's)?
# Arms on the 4 mm small recipe (../denoise_curve_cpu_20261202/small_4mm/run.sh), 1200 steps, one seed each,
# 32 cases each (Heun 30, seeds 0-31), realism checks against 16 held-out real cases (realism.py).
#   MANIFEST=/work/s24/anat_manifest.json ROOT=/work/s24/anat RUNS=/work/s24/small/runs bash run.sh ARM...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
brain_w1="--set conditioning.generate_brain=true --set objective.channel_weights=[1,1,1,1,100,100,100,1$(printf ',1%.0s' $(seq 56))]"
for arm in "$@"; do
  case $arm in
    control) sets="" ;;                                    # the shipped recipe
    brain_w1) sets="$brain_w1" ;;                          # the 2 mm variant's weights (mask's LLL 1, its detail 100)
    brain_w1_d1) sets="$brain_w1 --set objective.detail_weights={'brain':1}" ;;  # the mask's detail sub-bands at 1
    # the tumour masks' coarse band at 300 beside the brain channel (quality_scale's _masks_lll(300, brain=1))
    brain_w1_lab300) sets="--set conditioning.generate_brain=true --set objective.channel_weights=[1,1,1,1,300,300,300,1$(printf ',1%.0s' $(seq 56))]" ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086  # a list of --set words
  bash "$here/../denoise_curve_cpu_20261202/small_4mm/arm.sh" "$arm" $sets
done
