#!/bin/bash
# The readings of the arms all.sh made (W: its work folder): evaluate's realism checks on the shipped and the
# outside-the-tumour scale (../et_where_cpu_20261204/checks.py -> checks/{shipped,outside_tumour}/<arm>.json),
# the normal-brain levels by ET (levels.py -> levels.json) against the 512-case set's first 128 real training and
# held-out cases at 4 mm, and each model's paired region contrast on 16 training-fold masks
# (../../paired_contrast.py -> paired/<arm>/). ARMS: the arms (default: those with generated cases).
set -eu
. /tmp/venv/bin/activate
H=$(cd "$(dirname "$0")" && pwd); W=${W:-/work/s49/4mm}
E=$H/../denoise_curve_cpu_20261202/small_4mm/eval4mm.yaml; M=/work/s45/manifest512.json; D=/work/s45/anat
ARMS=${ARMS:-$(ls $W/gen)}
sets=(); for a in $ARMS; do sets+=("$a=$W/gen/$a"); done
python $H/../et_where_cpu_20261204/checks.py $E $M $D $W/checks 128 "${sets[@]}" > $W/checks.log 2>&1
mkdir -p $H/checks; cp -r $W/checks/shipped $W/checks/outside_tumour $W/checks/checks.json $H/checks/
python $H/levels.py $E $M $D 128 $H/levels.json "${sets[@]}" > $W/levels.log 2>&1
for a in $ARMS; do
  python $H/../../paired_contrast.py --model $W/runs/$a/model --config $W/runs/$a/resolved_config.yaml \
    --manifest $M --root $D --num 16 --out $W/paired/$a --sampler heun > $W/paired_$a.log 2>&1
  mkdir -p $H/paired/$a; cp $W/paired/$a/paired_contrast.json $W/paired/$a/paired_contrast.md $H/paired/$a/
done
echo READS-DONE
