#!/bin/bash
cd /work/s19/small
source /tmp/venv/bin/activate
./run.sh plain 1200 > plain.log 2>&1
./run.sh skip01 1200 --set objective.x0_skip_sigma=0.1 > skip01.log 2>&1
for a in plain skip01; do
  python /work/main/benchmarks/results/denoise_curve_cpu_20261202/denoise_curve.py --model runs/$a/model --data /work/anat/data --manifest /work/anat/manifest.json --cases 16 --out curve_$a > curve_$a.log 2>&1
done
echo ALL DONE > done.txt
