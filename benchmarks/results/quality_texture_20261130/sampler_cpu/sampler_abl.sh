set -x
. /work/venv/bin/activate
cd /tmp/qs
export OMP_NUM_THREADS=2
for v in "euler 10" "euler 50" "heun 30"; do
  set -- $v
  /usr/bin/time -f "%e s" medidiff generate --model anatomy-2mm --num 4 --out gen_s_$1$2 --seed 0 --device cpu --overwrite --no-progress --sampler $1 --steps $2
done
echo DONE
