"""The unlabelled-tumour check's volumes on REAL held-out cases without a tumour label, beside the shipped model's
tumour-free generated cases (flagged.txt: all 9 flagged, 94-158 mL of WT predicted): the same real-trained
segmenter (the tracked feature net, loaded as evaluate loads it for mask fidelity), the same grid and scale, the
first N held-out cases of the manifest (fidelity_new/ read the first 96). Per real case without a label: the
predicted volume (every predicted voxel is "away" on such a case), and the check's thresholds for reference.

    python real_away.py CONFIG MANIFEST ROOT FEATURE_NET N > real_away.txt
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval import _preload_real_segmenter  # noqa: E402
from medidiff.eval import data as evdata  # noqa: E402
from medidiff.eval.segmentation import evaluate_segmenter  # noqa: E402
from medidiff.eval.utility import SegmenterBank  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    config, manifest, root, net = (Path(a) for a in sys.argv[1:5])
    n = int(sys.argv[5])
    real = _RealCases(config, manifest, root, n, [*eval_scale_overrides(), f"eval.feature_net={net}", "eval.seeds=[0]",
                                                  "eval.device=cpu"])
    cfg, dcfg = real.cfg, real.dcfg
    bank = SegmenterBank({}, cfg, progress=False)
    assert _preload_real_segmenter(bank, cfg, dcfg, evdata.file_sha256(manifest)), "the feature net was not loaded"
    spacing = [float(s) * dcfg.downsample for s in dcfg.spacing]
    held = real.heldout
    sc = evaluate_segmenter(bank.get("real", 0), held.images, held.labels, spacing, threshold=cfg.threshold,
                            percentile=cfg.hd_percentile, batch_size=cfg.batch_size, case_ids=held.case_ids, away=True)
    away = np.asarray(sc.away_ml)  # (N, R)
    free = np.asarray(held.labels)[:, 0].reshape(len(held), -1).sum(1) == 0
    thr = json.loads((HERE / "fidelity_new/report.json").read_text())["results"]["fidelity"]["unlabelled_tumour"]
    thr = {r: round(v["threshold_ml"], 1) for r, v in thr["regions"].items()}
    print(f"{len(held)} real held-out cases, {int(free.sum())} without a tumour label; the check's thresholds (mL): {thr}")
    for cid, v in zip(np.asarray(held.case_ids)[free], away[free]):
        print(f"  {cid}: predicted WT / TC / ET mL {v.round(1).tolist()}")
    print("WT mL over the real tumour-free cases: median", float(np.median(away[free, 0])).__round__(1),
          "max", float(away[free, 0].max()).__round__(1))
    print("over all real held-out cases (the check's reference): WT mL median", float(np.median(away[:, 0])).__round__(1),
          "95 % quantile", float(np.quantile(away[:, 0], 0.95)).__round__(1))


if __name__ == "__main__":
    main()
