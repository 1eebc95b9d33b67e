#!/bin/bash
# The images' coarse band weighed more (issue 16; CPU, 4 mm small recipe of ../denoise_curve_cpu_20261202/small_4mm,
# 1200 steps, one seed an arm, 32 cases each, Heun 30): does the t1c level bias of the shipped recipe (normal brain
# +0.25 above real's in [-1, 1], its enhancing tumour saturated) shrink when the images' LLL weigh 30 instead of 1?
#   MANIFEST=... ROOT=... RUNS=... bash run.sh ARM...
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ones=$(printf ',1%.0s' $(seq 49))
for arm in "$@"; do
  case $arm in
    control) sets="" ;;  # the shipped recipe: images' LLL 1, masks' LLL 100, detail 100
    img_lll30) sets="--set objective.channel_weights=[30,30,30,30,100,100,100$ones]" ;;  # quality_scale's x0_detail100_lll30_labels_lll100
    # the same with the tumour masks' coarse band at 300: does it keep the tumours' size (img_lll30 shrank them)?
    img_lll30_lab300) sets="--set objective.channel_weights=[30,30,30,30,300,300,300$ones]" ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
  # shellcheck disable=SC2086  # a list of --set words
  bash "$here/../denoise_curve_cpu_20261202/small_4mm/arm.sh" "$arm" $sets
done
