#!/bin/bash
# session 55: the 4 mm CPU proxy of a learning-rate decay to the end (the lease's x0_detail100_labels_lll100_skip005_cosine).
# Four 2 mm seeds of the shipped recipe (constant rate) read 4.9-20.4x the Frechet floor, their histograms 1.4-7x apart
# (../seedpick4_h100_20261207/). Here: the recipe at 4 mm (../denoise_curve_cpu_20261202/small_4mm/run.sh: [16, 32, 64]
# net, micro-batch 4, lr 1e-3, 1200 steps) with the rate constant (as shipped) or decayed by cosine to 0 at step 1200,
# seeds 0-2 each, 32 cases each (Heun 30, case seeds 0-31: the same noise in every run), then realism.py on all six.
# ARMS (default all six, in this order) picks the runs; a second pass (after the lr_schedule wsd of this session's
# commit): ARMS="wsd_s0 wsd_s1 wsd_s2", the rate held, then decayed linearly to 0 over the last 240 steps.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. /tmp/venv/bin/activate
W=/work/s55/lr; mkdir -p $W/runs $W/gen
export MANIFEST=/work/s53/manifest400.json ROOT=/work/s53/anat400 RUNS=$W/runs
for run in ${ARMS:-const_s0 cosine_s0 const_s1 cosine_s1 const_s2 cosine_s2}; do
  arm=${run%_s*}; seed=${run#*_s}
  extra=(); [ "$arm" = cosine ] && extra=(--set train.lr_schedule=cosine)
  [ "$arm" = wsd ] && extra=(--set train.lr_schedule=wsd --set train.decay_fraction=0.2)
  bash $here/../denoise_curve_cpu_20261202/small_4mm/run.sh $run 1200 --set seed=$seed "${extra[@]}" > $here/$run.train.log 2>&1
  medidiff generate --model $W/runs/$run/model --num 32 --seed 0 --out $W/gen/$run --overwrite --no-progress > $here/$run.gen.log 2>&1
  echo "$run done $(date -u +%T)"
done
python $here/realism.py $here/realism $(for r in const_s0 cosine_s0 wsd_s0 const_s1 cosine_s1 wsd_s1 const_s2 cosine_s2 wsd_s2; do
  [ -d $W/gen/$r ] && echo $r=$W/gen/$r; done) > $here/realism.log 2>&1
echo DONE
