#!/bin/bash
# What ran, in order (sessions 45-46, by hand; kept as the record of the calls). Data in /work/s45 (not kept).
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd); tail=$here/../speckle_tail_cpu_20261205
cd /work/s45
export MANIFEST=/work/s45/manifest512.json ROOT=/work/s45/anat RUNS=/work/s45/runs
G=/work/s45/gen R=/work/s45/runs
# data (2.6 min) and the 512-case manifest: ../frechet_gap_cpu_20261205/README.md's two commands, here in /work/s45
# seed 0's start (14 min at 4.4 steps/s), its 32 cases
bash $here/../denoise_curve_cpu_20261202/small_4mm/run.sh group_s0_3600 3600 --set train.ckpt_every=1200 > $R/group_s0_3600.train.log 2>&1
bash $here/finetune_arms.sh                       # ctl tstd15 uniform
medidiff generate --model $R/group_s0_3600/model --num 32 --seed 0 --out $G/group_s0_3600 --overwrite --no-progress
ARMS=mean05 bash $here/finetune_arms.sh
python $tail/bg.py group_s0_3600=$G/group_s0_3600 ft_ctl_4800=$G/ft_ctl_4800 ft_mean05_4800=$G/ft_mean05_4800 \
  ft_tstd15_4800=$G/ft_tstd15_4800 ft_uniform_4800=$G/ft_uniform_4800 > bg.jsonl
python $tail/grid_tail.py --seeds 8 --out gridtail group_s0_3600=$R/group_s0_3600/model ft_ctl_4800=$R/ft_ctl_4800/model \
  ft_mean05_4800=$R/ft_mean05_4800/model ft_tstd15_4800=$R/ft_tstd15_4800/model ft_uniform_4800=$R/ft_uniform_4800/model
python $here/realism4mm.py real4mm group_s0_3600=$G/group_s0_3600 ft_ctl_4800=$G/ft_ctl_4800 \
  ft_mean05_4800=$G/ft_mean05_4800 ft_tstd15_4800=$G/ft_tstd15_4800 ft_uniform_4800=$G/ft_uniform_4800
bash $here/continue_arms.sh                       # ctl, mean05 to 7200
python $tail/bg.py ft_ctl_7200=$G/ft_ctl_7200 ft_mean05_7200=$G/ft_mean05_7200 >> bg.jsonl
python $here/realism4mm.py real4mm ft_ctl_7200=$G/ft_ctl_7200 ft_mean05_7200=$G/ft_mean05_7200
# paired differences: one call, these pairs in this order (one generator for all: the intervals depend on the order)
python $here/paired_bg.py ctl4800=$G/ft_ctl_4800 mean05_4800=$G/ft_mean05_4800 ctl4800=$G/ft_ctl_4800 \
  tstd15_4800=$G/ft_tstd15_4800 ctl4800=$G/ft_ctl_4800 uniform_4800=$G/ft_uniform_4800 ctl7200=$G/ft_ctl_7200 \
  mean05_7200=$G/ft_mean05_7200 base3600=$G/group_s0_3600 ctl4800=$G/ft_ctl_4800 base3600=$G/group_s0_3600 \
  mean05_4800=$G/ft_mean05_4800 mean05_4800=$G/ft_mean05_4800 mean05_7200=$G/ft_mean05_7200 > paired_bg.jsonl
python $tail/grid_tail.py --seeds 8 --out gridtail7200 ft_ctl_7200=$R/ft_ctl_7200/model ft_mean05_7200=$R/ft_mean05_7200/model
bash $here/seed1.sh                               # seed 1: start, ctl and mean05 to 4800
python $tail/bg.py ft_ctl_4800_s1=$G/ft_ctl_4800_s1 ft_mean05_4800_s1=$G/ft_mean05_4800_s1 >> bg.jsonl
python $here/paired_bg.py ctl4800_s1=$G/ft_ctl_4800_s1 mean05_4800_s1=$G/ft_mean05_4800_s1 >> paired_bg.jsonl
python $here/realism4mm.py real4mm ft_ctl_4800_s1=$G/ft_ctl_4800_s1 ft_mean05_4800_s1=$G/ft_mean05_4800_s1
python $here/table.py real4mm > real4mm_table.md
bash $here/skip035.sh                             # seed 0 from scratch, x0_skip_sigma 0.035, 3600 steps
python $tail/bg.py skip035_s0_3600=$G/skip035_s0_3600 >> bg.jsonl
python $here/paired_bg.py base3600=$G/group_s0_3600 skip035_3600=$G/skip035_s0_3600 >> paired_bg.jsonl
python $here/realism4mm.py real4mm skip035_s0_3600=$G/skip035_s0_3600
python $here/table.py real4mm > real4mm_table.md
bash $here/skip035_s1.sh   # seed 1 from scratch, skip 0.035, 3600 steps (session 45's end; these three calls reconstructed from their outputs)
python $tail/bg.py group_s1_3600=$G/group_s1_3600 skip035_s1_3600=$G/skip035_s1_3600 >> bg.jsonl
python $here/paired_bg.py base3600_s1=$G/group_s1_3600 skip035_3600_s1=$G/skip035_s1_3600 >> paired_bg.jsonl
# session 46 (data still in /work/s45): the smaller
# skip's seed-1 costs, then both skips and seed 1's recipe continued to 7200 steps
python $here/realism4mm.py real4mm group_s1_3600=$G/group_s1_3600 skip035_s1_3600=$G/skip035_s1_3600
bash $here/skip7200.sh                            # continue_to.sh x3 (ran from /work/s46), 46 min
python $tail/bg.py skip035_s0_7200=$G/skip035_s0_7200 skip035_s1_7200=$G/skip035_s1_7200 ft_ctl_7200_s1=$G/ft_ctl_7200_s1 >> bg.jsonl
python $here/paired_bg.py ctl7200=$G/ft_ctl_7200 skip035_7200=$G/skip035_s0_7200 ctl7200_s1=$G/ft_ctl_7200_s1 \
  skip035_7200_s1=$G/skip035_s1_7200 >> paired_bg.jsonl
python $here/realism4mm.py real4mm skip035_s0_7200=$G/skip035_s0_7200 skip035_s1_7200=$G/skip035_s1_7200 \
  ft_ctl_7200_s1=$G/ft_ctl_7200_s1
python $here/table.py real4mm > real4mm_table.md
