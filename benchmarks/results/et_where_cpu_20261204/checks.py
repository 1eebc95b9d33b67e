"""The realism checks' tumour readings (session 35: ET share of WT, tumours a case, the ET's bright end) of
generated sets, on the shipped and the outside-the-tumour scale, against the first N real training and
held-out cases:

    python checks.py CONFIG MANIFEST ROOT OUT N NAME=GENERATED...
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides  # noqa: E402

config, manifest, root, out, n, *sets = sys.argv[1:]
generated = {k: Path(v) for k, v in (s.split("=", 1) for s in sets)}
table = {}
for scale, overrides in (("shipped", eval_scale_overrides()), ("outside_tumour", normal_brain_scale_overrides())):
    res = realism_checks_of(Path(config), Path(manifest), Path(root), generated, int(n), Path(out) / scale,
                            sets=overrides)
    for name, r in res.items():
        t, c = r["checks"]["tumour_statistics"], r["checks"]["tumour_contrast"]
        table[f"{scale}/{name}"] = {
            "tumour_statistics": {k: t[k] for k in ("share_with_tumour", "share_with_several_tumours",
                                                    "size_log10_wt_fraction", "et_share_of_wt_log10", "pass")},
            "tumour_contrast": {key: c[key]["t1c"] for key in ("et_contrast", "et_upper", "top_in_tumour")}}
(Path(out) / "checks.json").write_text(json.dumps(table, indent=1, default=float) + "\n")
print(json.dumps(table, indent=1, default=float))
