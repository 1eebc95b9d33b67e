"""Realism checks (tumour share and sizes, brain size, spectrum) of run.sh's arms, against 16 held-out real
cases on the 4 mm grid; writes realism/<arm>.json and table.md.

    python realism.py /work/s24/anat_manifest.json /work/s24/anat /work/s24/small ARM...
    python realism.py --out DIR ...     (realism/ and table.md in DIR instead of beside this script)
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import realism_checks_of  # noqa: E402

args = sys.argv[1:]
here = Path(args[1]).resolve() if args[0] == "--out" else Path(__file__).resolve().parent
manifest, root, small, *arms = args[2:] if args[0] == "--out" else args
small = Path(small)
res = realism_checks_of(small / "runs" / arms[0] / "resolved_config.yaml", Path(manifest), Path(root),
                        {a: small / "gen" / a for a in arms}, 16, here / "realism")
rows = ["| arm | cases with a tumour | tumour share (real) | tumour size median log10 synthetic / real, W1 | "
        "brain size log10 vs real | spectrum max abs log10 t1n / t1c / t2w / t2f |", "|---|---|---|---|---|---|"]
for arm, r in res.items():
    c = (r["results"]["realism"] if "results" in r else r)["checks"]
    t, b = c["tumour_statistics"], c["brain_size"]
    share, size = t["share_with_tumour"], t["size_log10_wt_fraction"]
    spec = c["power_spectrum"]["per_modality"]
    rows.append(f"| {arm} | {round(share['synthetic'] * share['cases'])} of {share['cases']} | {share['synthetic']:.2f} "
                f"({share['real']:.2f}) | {size['synthetic_median']:.2f} / {size['real_median']:.2f}, "
                f"{size['wasserstein']:.3f} | {b['synthetic_median'] - b['real_median']:+.3f} | "
                + " / ".join(f"{spec[m]['max_abs_log10_ratio']:.2f}" for m in ("t1n", "t1c", "t2w", "t2f")) + " |")
(here / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
