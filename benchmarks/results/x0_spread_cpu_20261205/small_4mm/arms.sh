#!/bin/bash
# The 4 mm CPU proxy of denoise_curve_cpu_20261202/small_4mm/run.sh (the shipped recipe, configs/anatomy_2mm.yaml,
# at 4 mm with a [16, 32, 64] net, 1200 steps), two arms: as shipped (the images' coarse band LLL at loss weight 1)
# and the images' LLL at 30 (quality_scale's x0_detail100_lll30_labels_lll100_skip005 keys), and (ARMS=pixel, run
# after) net.norm=pixel (per-voxel RMS norm: no per-case spatial statistics removed); then x0_spread.py on 32
# held-out cases of each. Data: session 40's 512-case anatomy set (not kept).
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
export MANIFEST=/work/s40/manifest512.json ROOT=/work/s40/anat RUNS=/work/s41/small/runs
mkdir -p $RUNS
lll30=$(cat "$here/lll30.txt")
for arm in ${ARMS:-lll1 lll30}; do
  extra=(); [ $arm = lll30 ] && extra=(--set "objective.channel_weights=$lll30")
  [ $arm = pixel ] && extra=(--set net.norm=pixel)
  echo "== $arm $(date -u +%T)"
  bash /work/main/benchmarks/results/denoise_curve_cpu_20261202/small_4mm/run.sh $arm 1200 "${extra[@]}" > $RUNS/$arm.train.log 2>&1
  echo "== $arm trained $(date -u +%T)"
  python "$here/../x0_spread.py" --model $RUNS/$arm/model --data $ROOT --manifest $MANIFEST --cases 32 \
    --times 0.97 0.95 0.9 0.7 0.5 0.3 0.1 --out /work/s41/small/x0_$arm > "$here/x0_spread_$arm.log" 2>&1
  cp /work/s41/small/x0_$arm/x0_spread.json "$here/x0_spread_$arm.json"
  echo "== $arm done $(date -u +%T)"
done
