#!/bin/bash
# session 52: the shipped model's x0 estimate of 16 real held-out tumour-free cases and 16 with a tumour (the first
# of each kind in the held-out fold's order), 2 cores, 2.5 minutes
set -eu
. /tmp/venv/bin/activate
here=$(cd "$(dirname "$0")" && pwd)
cd /work/s52
python $here/x0_bright.py --data /work/s47/anat1536 --manifest /work/s51/manifest.json --cases 16 --out /work/s52/x0b16 \
  > $here/x0_bright.txt 2> $here/x0_bright.log
cp /work/s52/x0b16/x0_bright.json $here/
python $here/differences.py > $here/differences.txt
