"""How much frechet_gap.py's "background cleared" changes each set (on the [-1, 1] scale its features read):
the share of voxels changed, the largest change and the RMS change over the grid (all cases and modalities).

    python cleared_check.py NAME=FOLDER ... > cleared_check.jsonl
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
sys.path.insert(0, str(HERE.parent / "frechet_gap_cpu_20261205"))
import frechet_gap as fg  # noqa: E402
from quality_common import _RealCases  # noqa: E402

CONFIG = HERE.parent / "quality_scale_h200_20261205/configs/x0_detail100_labels_lll100_skip005_seed0.yaml"

real = _RealCases(CONFIG, Path("/work/s45/manifest512.json"), Path("/work/s45/anat"), 8)  # the loaders only
for arg in sys.argv[1:]:
    name, folder = arg.split("=", 1)
    syn = real.synthetic(Path(folder))
    x = syn.images.float()
    m = fg.regions(x, syn.labels)
    d = (fg.background_cleared(x, {"brain": m["normal"] | m["edema"] | m["core"] | m["enhancing"]}) - x).abs()
    print(name, json.dumps({"cases": len(x), "share_changed": float((d > 0).float().mean()),
                            "max_abs_change": float(d.max()), "rms_change": float(d.pow(2).mean().sqrt())}), flush=True)
