#!/bin/bash
# Does pixel norm widen the GENERATED spread across cases at 4 mm (issue 16; CPU, session 42)? The 4 mm proxy of
# ../denoise_curve_cpu_20261202/small_4mm/run.sh (the shipped recipe at 4 mm, a [16, 32, 64] net, 1200 steps):
# GroupNorm (the shipped net.norm) and pixel norm, seeds 0 and 1 each (seed 0 of both trained in session 41 for
# ../x0_spread_cpu_20261205/small_4mm, reused), and the training times without the resolution shift
# (objective.time_shift=false: training and sampling grid both), seeds 0 and 1; then (ARMS=..., a second pass)
# GroupNorm trained 3x as long (3600 steps: under-training?) and session 41's images' LLL at 30 (lll30, seed 0,
# reused: the coarse band's loss weight), and a third pass, self-attention in the bottleneck (net.mid_attention:
# the only path that sees the whole case at once; GroupNorm's case-wide statistics are removed, not passed on),
# seed 0, also read by ../x0_spread_cpu_20261205/x0_spread.py on 32 held-out cases. 32 cases an arm (seed 0: the same
# noise in every arm), then spread_check.py (../spread_check_cpu_20261205) against 381 real training / 131 held-out
# cases at 4 mm. Data: session 40's 512-case anatomy set (/work/s40/anat, not kept).
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
export MANIFEST=/work/s40/manifest512.json ROOT=/work/s40/anat RUNS=/work/s42/small/runs
old=/work/s41/small/runs
mkdir -p $RUNS /work/s42/small/gen
train() {  # arm, steps, extra --set words
  local arm=$1 steps=$2; shift 2
  echo "== $arm $(date -u +%T)"
  bash "$here/../denoise_curve_cpu_20261202/small_4mm/run.sh" "$arm" $steps "$@" > $RUNS/$arm.train.log 2>&1
  cp $RUNS/$arm.train.log "$here/$arm.train.log"
}
x0() {  # the x0 reading of ../x0_spread_cpu_20261205 on 32 held-out cases
  python "$here/../x0_spread_cpu_20261205/x0_spread.py" --model $RUNS/$1/model --data $ROOT --manifest $MANIFEST \
    --cases 32 --times 0.97 0.95 0.9 0.7 0.5 0.3 0.1 --out /work/s42/small/x0_$1 > "$here/x0_spread_$1.log" 2>&1
  cp /work/s42/small/x0_$1/x0_spread.json "$here/x0_spread_$1.json"
}
for arm in ${ARMS:-group_s1 pixel_s1 noshift_s0}; do
  case $arm in
    group_s1) train $arm 1200 --set seed=1 ;;
    pixel_s1) train $arm 1200 --set seed=1 --set net.norm=pixel ;;
    noshift_s0) train $arm 1200 --set objective.time_shift=false ;;
    noshift_s1) train $arm 1200 --set seed=1 --set objective.time_shift=false ;;
    group_s0_3600) train $arm 3600; x0 $arm ;;  # (its x0 reading was run after the third pass, by hand)
    group_s1_3600) train $arm 3600 --set seed=1 ;;  # fourth pass: the longer run's second seed
    midattn_s0) train $arm 1200 --set net.mid_attention=true; x0 $arm ;;
    # fifth pass (session 43): no shift trained 3x as long, both seeds: do the two widenings add?
    noshift_s0_3600) train $arm 3600 --set objective.time_shift=false; x0 $arm ;;
    noshift_s1_3600) train $arm 3600 --set seed=1 --set objective.time_shift=false ;;
    # sixth pass (session 43): every detail band at loss weight 1, as LLL (the recipe's 100 leaves the coarse band,
    # where the brain's size lives, ~1/700 of each modality's loss weight)
    detail1_s0) train $arm 1200 --set objective.detail_weight=1.0 ;;
    detail1_s1) train $arm 1200 --set seed=1 --set objective.detail_weight=1.0 ;;
    # seventh pass (session 43): detail1 also moved the loss onto the labels' LLL (85 % of the total weight); this
    # raises each image's LLL to 100 instead (channel_weights' first four entries): its share of that image's weight
    # 1/8 as in detail1, the images' share of the total unchanged (57 % against 54 %); session 41's lll30 at 30
    lll100_s0) train $arm 1200 --set "objective.channel_weights=[100,100,100,100,100,100,100,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]" ;;
    lll100_s1) train $arm 1200 --set seed=1 --set "objective.channel_weights=[100,100,100,100,100,100,100,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]" ;;
  esac
done
declare -A model=([group_s0]=$old/lll1/model [pixel_s0]=$old/pixel/model [group_s1]=$RUNS/group_s1/model
                  [pixel_s1]=$RUNS/pixel_s1/model [noshift_s0]=$RUNS/noshift_s0/model [lll30_s0]=$old/lll30/model
                  [noshift_s1]=$RUNS/noshift_s1/model [group_s0_3600]=$RUNS/group_s0_3600/model
                  [midattn_s0]=$RUNS/midattn_s0/model [group_s1_3600]=$RUNS/group_s1_3600/model
                  [noshift_s0_3600]=$RUNS/noshift_s0_3600/model [noshift_s1_3600]=$RUNS/noshift_s1_3600/model
                  [detail1_s0]=$RUNS/detail1_s0/model [detail1_s1]=$RUNS/detail1_s1/model
                  [lll100_s0]=$RUNS/lll100_s0/model [lll100_s1]=$RUNS/lll100_s1/model)
sets=()
for arm in group_s0 pixel_s0 group_s1 pixel_s1 noshift_s0 noshift_s1 group_s0_3600 lll30_s0 midattn_s0 group_s1_3600 noshift_s0_3600 noshift_s1_3600 detail1_s0 detail1_s1 lll100_s0 lll100_s1; do
  [ -d "${model[$arm]}" ] || continue
  echo "== generate $arm $(date -u +%T)"
  [ -d /work/s42/small/gen/$arm ] || medidiff generate --model "${model[$arm]}" --num 32 --seed 0 \
    --out /work/s42/small/gen/$arm --overwrite --no-progress > "$here/$arm.gen.log" 2>&1
  sets+=("$arm=/work/s42/small/gen/$arm")
done
echo "== spread $(date -u +%T)"
python "$here/../spread_check_cpu_20261205/spread_check.py" "$here/../denoise_curve_cpu_20261202/small_4mm/eval4mm.yaml" \
  $MANIFEST $ROOT 512 "${sets[@]}" > "$here/spread_check.json" 2> "$here/spread_check.log"
echo "== done $(date -u +%T)"
