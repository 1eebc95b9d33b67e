"""evaluate's mask fidelity and unlabelled-tumour check (`medidiff evaluate --tasks fidelity`) on a written generated
set, through the synthetic pipeline as it was before session 51 (OLD=1: percentiles over the non-zero voxels, the
whole volume) or as it is now, with the tracked feature net as the real-trained segmenter (no training), against
the first N held-out cases (eval.max_real). The same command line as evaluate's; the old pipeline by replacing
medidiff.eval.data.synthetic_transforms before evaluate runs.

    [OLD=1] python fidelity_before_after.py evaluate --real ... --synthetic ... --out ... --tasks fidelity ...
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from region_frechet import old_synthetic_transforms  # noqa: E402

from medidiff.cli.main import main  # noqa: E402
from medidiff.eval import data as evdata  # noqa: E402



def old(dcfg, *, background: float, with_label: bool):
    assert background == 0.0 and with_label, "the old pipeline here: no background zeroing, labelled cases"
    return old_synthetic_transforms(dcfg)


if os.environ.get("OLD") == "1":
    evdata.synthetic_transforms = old
sys.exit(main(sys.argv[1:]))
