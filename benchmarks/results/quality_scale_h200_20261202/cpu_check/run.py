"""Session 18's CPU check of the new brain size realism check on the two models this lease brought
back (bf16, not in the repository): 6 cases each generated on CPU (`medidiff generate --num 6`,
Heun 30 as shipped, seeds 0-5), against 48 + 48 real cases of the local 384-case anatomy set (the
same generator and seed as the GPU run's 1536, so the same distribution; not the same manifest).

    medidiff generate --model models/x0_detail300_labels_lll300_bg10_seed0 --num 6 --out /tmp/gen_bg10
    medidiff generate --model models/x0_detail300_labels_lll300_seed0 --num 6 --out /tmp/gen_nobg
    python benchmarks/results/quality_scale_h200_20261202/cpu_check/run.py /work/anat /tmp/gen_nobg /tmp/gen_bg10
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # benchmarks/

from quality_common import realism_checks_of  # noqa: E402

anat, nobg, bg10 = (Path(a) for a in sys.argv[1:4])
results = realism_checks_of(HERE.parent / "configs" / "x0_detail300_labels_lll300_seed0.yaml", anat / "manifest.json",
                            anat / "data", {"x0_detail300_labels_lll300_seed0": nobg,
                                            "x0_detail300_labels_lll300_bg10_seed0": bg10}, 48, HERE)
summary = {name: {"failed": r["failed"], "brain_size": r["checks"]["brain_size"]} for name, r in results.items()}
(HERE / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
print(json.dumps(summary, indent=1, default=float))
