#!/bin/bash
# The same lease, once run.sh's first readings were back (neither resolved at 96 cases): 96 more cases a set
# (seeds 5096-5191) of both models, with and without the tail, and the paired difference over all 192 a set.
#   mkdir -p /tmp/tpout2 && JOB_OUT=/tmp/tpout2 setsid nohup bash run2.sh > /tmp/tpout2/log 2>&1 &
#   (once run.sh has generated its sets: its data in /tmp/tp; run.sh's realism reading still ran beside it)
source "$(dirname "$0")/common.sh"
gen anatomy-2mm 0 shipped_tail0b 5096
gen anatomy-2mm 1 shipped_tail1b 5096
stamp "pair shipped 192"
python3 "$R/tail_frechet_cpu_20261206/tail_pair.py" shipped_tail0,shipped_tail0b shipped_tail1,shipped_tail1b \
  > "$out/pair_shipped192.json" &
gen /tmp/uncapped 0 uncapped_tail0b 5096
gen /tmp/uncapped 1 uncapped_tail1b 5096
stamp "pair uncapped 192"
python3 "$R/tail_frechet_cpu_20261206/tail_pair.py" uncapped_tail0,uncapped_tail0b uncapped_tail1,uncapped_tail1b \
  > "$out/pair_uncapped192.json"
wait
stamp "JOB DONE"
