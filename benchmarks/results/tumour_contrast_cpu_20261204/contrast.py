"""The realism check tumour_contrast on CPU-generated cases of a model, read on the shipped scale and on the
outside-the-tumour scale (quality_scale's two readings), against the first N real training and held-out cases:

    python contrast.py CONFIG MANIFEST ROOT OUT N NAME=GENERATED...

prints, per scale and set, each modality's ET contrast (median ET - median normal brain) and share of the brain's
brightest 0.5 % inside the tumour, synthetic median / real median (W1, floor, verdict)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides  # noqa: E402

config, manifest, root, out, n, *sets = sys.argv[1:]
generated = dict(s.split("=", 1) for s in sets)
table = {}
for scale, overrides in (("shipped", eval_scale_overrides()), ("outside_tumour", normal_brain_scale_overrides())):
    res = realism_checks_of(Path(config), Path(manifest), Path(root), {k: Path(v) for k, v in generated.items()},
                            int(n), Path(out) / scale, sets=overrides)
    for name, r in res.items():
        c = r["checks"]["tumour_contrast"]
        table[f"{scale}/{name}"] = {"pass": c["pass"], **{
            f"{key}/{mod}": {k: v[k] for k in ("synthetic_median", "real_median", "wasserstein", "floor", "pass")}
            for key in ("et_contrast", "top_in_tumour") for mod, v in c[key].items()}}
        for key in ("et_contrast", "top_in_tumour"):
            print(f"| {scale} | {name} | {key} | " + " | ".join(
                f"{v['synthetic_median']:+.2f} / {v['real_median']:+.2f} (W1 {v['wasserstein']:.3f}, floor "
                f"{v['floor']:.3f}, {'pass' if v['pass'] else 'FAIL'})" for v in c[key].values()) + " |")
(Path(out) / "contrast.json").write_text(json.dumps(table, indent=1))
