#!/bin/bash
# Session 47's lease: the tail step's Frechet cut (sessions 44-46: one model, one draw of noise) on a second draw of
# noise (seeds 5000-5095: the earlier readings used 0-47) with 96 cases a set, and on a second model (session 46's
# uncapped run of the shipped recipe, 16 432 steps, fetched then: /work/s46/lease/models/, carried by a second
# call to /tmp/uncapped), each paired case by case (../tail_frechet_cpu_20261206/tail_pair.py: the same reference,
# 128 real training cases of the 512-case anatomy set, made here as on the CPU), then the realism checks of the
# four sets and frechet_gap.py's per-region split of the shipped model's two sets (on the CPU, beside the card).
#   mkdir -p /tmp/tpout && JOB_OUT=/tmp/tpout setsid nohup bash run.sh > /tmp/tpout/log 2>&1 &      (wheels installed, PYTHONPATH set)
source "$(dirname "$0")/common.sh"
stamp data
python3 -m medidiff data anatomy anat --cases 512 --shape 120 120 78 --seed 0 --workers 16 > "$out/data.log" 2>&1
python3 -c "import json; m = json.load(open('$R/quality_scale_h200_20261205/manifest.json')); \
  m['training'] = m['training'][:512]; m['numTraining'] = 512; json.dump(m, open('manifest512.json', 'w'))"
# the same data as the CPU records' /work/s45 (compared there)
sha256sum manifest512.json anat/BraTS-GLI-00000-000/* anat/BraTS-GLI-00511-000/* > "$out/data_sha256.txt"
gen anatomy-2mm 0 shipped_tail0 5000
gen anatomy-2mm 1 shipped_tail1 5000
CONFIG=$R/quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml
NET=$R/../nets/anatomy1536_fold0/feature_net
shipped_cpu() {  # on the CPU, beside the second model's generation on the card
  stamp "pair shipped"
  python3 "$R/tail_frechet_cpu_20261206/tail_pair.py" shipped_tail0 shipped_tail1 > "$out/pair_shipped.json"
  for t in 0 1; do
    stamp "gap shipped_tail$t"
    python3 "$R/frechet_gap_cpu_20261205/frechet_gap.py" $CONFIG manifest512.json anat $NET shipped_tail$t 128 \
      "whole brain calibrated, every modality" "per region calibrated, every modality" \
      "per region level only, every modality" "tumour painted out (normal-brain median)" \
      "per region calibrated, t1n only" "per region calibrated, t1c only" "per region calibrated, t2w only" \
      "per region calibrated, t2f only" > "$out/gap_shipped_tail$t.json" 2> "$out/gap_shipped_tail$t.log"
  done
  stamp "shipped cpu done"
}
shipped_cpu > "$out/shipped_cpu.log" 2>&1 &
while [ ! -f /tmp/uncapped/model.safetensors ]; do sleep 5; done  # the second call's carry
gen /tmp/uncapped 0 uncapped_tail0 5000
gen /tmp/uncapped 1 uncapped_tail1 5000
stamp pair uncapped
python3 "$R/tail_frechet_cpu_20261206/tail_pair.py" uncapped_tail0 uncapped_tail1 > "$out/pair_uncapped.json"
stamp realism
python3 "$R/tail_frechet_cpu_20261206/realism2mm.py" "$out/realism" shipped_tail0=shipped_tail0 \
  shipped_tail1=shipped_tail1 uncapped_tail0=uncapped_tail0 uncapped_tail1=uncapped_tail1 > "$out/realism.log" 2>&1
wait
stamp "JOB DONE"
