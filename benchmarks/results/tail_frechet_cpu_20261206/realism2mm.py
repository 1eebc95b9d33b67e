"""medidiff evaluate's realism checks (quality_common.realism_checks_of) for the 2 mm CPU sets of run.sh, against
96 real training and 96 held-out cases of the 512-case set (the GPU job's realism phase used 96 + 96 of the 1536),
on the shipped model's experiment config: one JSON report a set in OUT, one line a set on stdout.

    python realism2mm.py OUT NAME=FOLDER ...
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402

CONFIG = HERE.parent / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml"


def main() -> None:
    out = Path(sys.argv[1])
    sets = {k: Path(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
    res = realism_checks_of(CONFIG, Path("/work/s45/manifest512.json"), Path("/work/s45/anat"), sets, 96, out)
    for name, r in res.items():
        c = r["checks"]
        print(name, json.dumps({
            "background_rms": c["background"]["synthetic_rms"],
            "histogram_w1": {m: v["wasserstein"] for m, v in c["intensity_histogram"]["per_modality"].items()},
            "spectrum_max": {m: v["max_abs_log10_ratio"] for m, v in c["power_spectrum"]["per_modality"].items()},
            "coherence": {m: v["difference"] for m, v in c["detail_coherence"]["per_modality"].items()},
            "spread": {k: v["ratio"] for k, v in c["spread_across_cases"]["per_property"].items()}}, default=float))


if __name__ == "__main__":
    main()
