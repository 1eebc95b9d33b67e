# What run.sh, run2.sh and run3.sh share (sourced): the folders, the environment and one generation call.
set -eu
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
R=$here/..
out=${JOB_OUT:?}; W=/tmp/tp; mkdir -p "$W" "$out"
export DATA=$W THREADS=8 PYTHONUNBUFFERED=1  # THREADS: two CPU jobs side by side
cd $W
stamp() { echo "== $* $(date -u +%FT%TZ)"; }
gen() {  # model, tail steps, folder, first noise seed: 96 cases on the card
  stamp "generate $3"
  python3 -m medidiff generate --model "$1" --num 96 --seed "$4" --sampler heun --tail-steps "$2" \
    --device cuda --batch 8 --out "$3" --overwrite --no-progress > "$out/$3.log" 2>&1
}
