#!/bin/bash
cd /work/s19/small
source /tmp/venv/bin/activate
./run.sh skip005 1200 --set objective.x0_skip_sigma=0.05 > skip005.log 2>&1
python /work/main/benchmarks/results/denoise_curve_cpu_20261202/denoise_curve.py --model runs/skip005/model --data /work/anat/data --manifest /work/anat/manifest.json --cases 16 --out curve_skip005 > curve_skip005.log 2>&1
python /work/main/benchmarks/sampler_ablation.py --model runs/skip005/model --config eval4mm.yaml --out gen_skip005 --data /work/anat/data --manifest /work/anat/manifest.json --variants euler30 heun30 --num 16 --real 16 > gen005.log 2>&1
echo DONE > s005_done.txt
