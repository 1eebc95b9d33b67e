set -x
for v in "p2 2 " "p3 3 " "s1 1 1"; do set -- $v
  GRID_POWER=$2 GRID_SHIFT=$3 /tmp/venv/bin/python /work/gridexp/grid_exp.py --out /work/gridexp/$1 --data /work/anat/data --manifest /work/anat/manifest.json --variants euler30 --num 8 --real 16 > /work/gridexp/$1.log 2>&1
done
