"""How many of the real cases each reading trained and tested on are tumour-free: the anatomy generator's tumour
draw (medidiff.data.anatomy.make_anatomy_case: rng_decide.random() < tumour_fraction 0.8, case i of seed 0 from
case_seed(0, i)) replayed for the case ids in each report (the data files stayed on the GPU host). Later steps can
only turn a drawn tumour off (a tumour that does not fit), so the replay's tumour-free counts are lower bounds; with
REAL_DIR (a folder `medidiff data anatomy --seed 0` wrote) it checks the replay against the written seg.json files.
python tumour_free.py [REAL_DIR]   (repository root or anywhere medidiff imports)"""
import glob
import json
import sys
from pathlib import Path

import numpy as np

from medidiff.data.phantom import case_seed

HERE = Path(__file__).parent


def drawn_tumour(index: int, seed: int = 0) -> bool:
    root = np.random.default_rng(case_seed(seed, index))
    decide = np.random.default_rng(int(root.integers(0, 2**62, 4)[2]))
    return bool(decide.random() < 0.8)


if len(sys.argv) > 1:
    metas = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/*/*-seg.json"))]
    agree = sum(drawn_tumour(m["case_index"]) == m["has_tumour"] for m in metas)
    print(f"replay against {sys.argv[1]}: {agree} of {len(metas)} cases agree")
for name, path in (("A (seeds 0 1)", "eval/x0_detail100_labels_lll100_skip005_scaleout_seed2_utility/report.json"),
                   ("B (seed 2)", "u30/report.json")):
    ids = json.loads((HERE / path).read_text())["data"]["case_ids"]
    for side in ("real_train", "real_heldout"):
        free = sum(not drawn_tumour(int(c.split("-")[2])) for c in ids[side])
        print(f"{name} {side}: {free} of {len(ids[side])} tumour-free by the replayed draw")
