"""Realism of 4 mm arms read on the shipped intensity scale whatever their own (quality_scale.eval_scale_overrides),
against 16 real training and 16 held-out cases; prints one cross_table.md row an arm (session 32):

    python realism_shipped.py OUT MANIFEST ROOT SMALL ARM...      # SMALL holds runs/ARM and gen/ARM
    python realism_shipped.py --outside-tumour OUT ...            # on quality_scale's second scale instead

(../brain_detail_cpu_20261202/realism.py reads every arm on the first arm's scale: the control first gave the
shipped scale; an arm on another scale read alone would be judged on its own.)"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides  # noqa: E402

args = sys.argv[1:]
outside = args[:1] == ["--outside-tumour"]
out, manifest, root, small, *arms = args[1:] if outside else args
small = Path(small)
res = realism_checks_of(small / "runs" / arms[0] / "resolved_config.yaml", Path(manifest), Path(root),
                        {a: small / "gen" / a for a in arms}, 16, Path(out) / "realism",
                        sets=normal_brain_scale_overrides() if outside else eval_scale_overrides())
for arm, r in res.items():
    c = (r["results"]["realism"] if "results" in r else r)["checks"]
    h, coh, sp, bg, t = (c["intensity_histogram"]["per_modality"], c["detail_coherence"]["per_modality"],
                         c["power_spectrum"]["per_modality"], c["background"], c["tumour_statistics"])
    share = t["share_with_tumour"]
    print(f"| {arm} | " + " / ".join(f"{h[m]['wasserstein']:.3f}" for m in h)
          + " (" + " / ".join(f"{h[m]['floor']:.3f}" for m in h) + ") | "
          + " / ".join(f"{coh[m]['synthetic'] - coh[m]['real']:+.2f}" for m in coh)
          + f" | {bg['synthetic_rms']:.4f}, {bg['synthetic_fraction_nonzero']:.3f} | "
          + " / ".join(f"{sp[m]['max_abs_log10_ratio']:.2f}" for m in sp)
          + f" | {round(share['synthetic'] * share['cases'])} of {share['cases']}; "
            f"{t['size_log10_wt_fraction']['wasserstein']:.2f} |")
