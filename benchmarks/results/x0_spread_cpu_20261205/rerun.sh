#!/bin/bash
# Every table of README.md from one run each (session 41; the first runs lacked rms_error / truth_sd)
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
cd /work/main
python $here/x0_spread.py --data /work/s40/anat --manifest /work/s40/manifest512.json --cases 32 --out /work/s41/x0 > $here/x0_spread.log 2>&1
cp /work/s41/x0/x0_spread.json $here/x0_spread.json
for arm in lll1 lll30 pixel; do
  python $here/x0_spread.py --model /work/s41/small/runs/$arm/model --data /work/s40/anat --manifest /work/s40/manifest512.json \
    --cases 32 --times 0.97 0.95 0.9 0.7 0.5 0.3 0.1 --out /work/s41/small/x0_$arm > $here/small_4mm/x0_spread_$arm.log 2>&1
  cp /work/s41/small/x0_$arm/x0_spread.json $here/small_4mm/x0_spread_$arm.json
done
