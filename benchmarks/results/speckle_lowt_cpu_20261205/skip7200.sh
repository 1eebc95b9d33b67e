#!/bin/bash
# Session 46: the skip at 0.035 and the recipe (0.05) at 7200 steps, both seeds (seed 0's recipe: ft_ctl_7200)
set -eu
h=$(cd "$(dirname "$0")" && pwd)  # (ran from /work/s46)
bash $h/continue_to.sh skip035_s0_3600 skip035_s0_7200 7200 --set objective.x0_skip_sigma=0.035
bash $h/continue_to.sh skip035_s1_3600 skip035_s1_7200 7200 --set objective.x0_skip_sigma=0.035 --set seed=1
bash $h/continue_to.sh ft_ctl_4800_s1 ft_ctl_7200_s1 7200 --set seed=1
echo ALL-DONE
