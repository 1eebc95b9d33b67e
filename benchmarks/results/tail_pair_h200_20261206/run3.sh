#!/bin/bash
# The same lease, after run2.sh (the shipped model's cut resolved at 192 a set, the uncapped model's not): the
# real-vs-real floor at 96 and 192 cases (floor.py) on the CPU, beside 96 more cases a set of the uncapped model
# (seeds 5192-5287) on the card, and its paired difference over all 288.
#   mkdir -p /tmp/tpout3 && JOB_OUT=/tmp/tpout3 setsid nohup bash run3.sh > /tmp/tpout3/log 2>&1 &
source "$(dirname "$0")/common.sh"
stamp floor
python3 "$here/floor.py" > "$out/floor.json" 2> "$out/floor.log" &
gen /tmp/uncapped 0 uncapped_tail0c 5192
gen /tmp/uncapped 1 uncapped_tail1c 5192
stamp "pair uncapped 288"
python3 "$R/tail_frechet_cpu_20261206/tail_pair.py" uncapped_tail0,uncapped_tail0b,uncapped_tail0c \
  uncapped_tail1,uncapped_tail1b,uncapped_tail1c > "$out/pair_uncapped288.json"
wait
stamp "JOB DONE"
