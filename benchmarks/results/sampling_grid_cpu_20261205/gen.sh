set -e
. /tmp/venv/bin/activate
cd /work/s41
for v in s36 s1; do
  date -u +%T; /usr/bin/time -v medidiff generate --model m_$v --num 16 --seed 0 --sampler heun --steps 30 --out gen_$v --no-progress > gen_$v.log 2>&1
done
date -u +%T; echo GEN DONE
