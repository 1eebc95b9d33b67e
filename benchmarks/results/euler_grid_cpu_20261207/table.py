"""The Euler 20 / 24 realism reports of run.sh beside ../tail_grain_cpu_20261206/'s sets of the same model and case
seeds (Heun 30 as shipped, Euler 30, Euler 15), with the spectrum's bands: python table.py > table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAIL = HERE.parent / "tail_grain_cpu_20261206" / "realism"
sets = {"Heun 30 (as shipped)": TAIL / "tail0.json", "Euler 30": TAIL / "euler30.json",
        "Euler 24": HERE / "realism" / "euler24.json", "Euler 20": HERE / "realism" / "euler20.json",
        "Euler 15": TAIL / "euler15.json"}
rows = {k: json.loads(f.read_text())["results"]["realism"]["checks"] for k, f in sets.items()}
mods = ("t1n", "t1c", "t2w", "t2f")
print("| 12 cases a set, evaluate's scale | " + " | ".join(rows) + " |")
print("|---|" + "---|" * len(rows))
def line(label, f):
    print(f"| {label} | " + " | ".join(f(c) for c in rows.values()) + " |")
line("detail coherence vs real t1n / t1c / t2w / t2f (< 0 grain)",
     lambda c: " / ".join(f"{c['detail_coherence']['per_modality'][m]['difference']:+.3f}" for m in mods))
line("background RMS / non-zero share", lambda c: f"{c['background']['synthetic_rms']:.4f} / {c['background']['synthetic_fraction_nonzero']:.3f}")
line("spectrum max abs log10 t1n / t1c / t2w / t2f",
     lambda c: " / ".join(f"{c['power_spectrum']['per_modality'][m]['max_abs_log10_ratio']:.2f}" for m in mods))
line("histogram W1 t1n / t1c / t2w / t2f",
     lambda c: " / ".join(f"{c['intensity_histogram']['per_modality'][m]['wasserstein']:.3f}" for m in mods))
for m in mods:
    line(f"spectrum log10 ratio by band, {m} (low to high)",
         lambda c, m=m: " ".join(f"{v:+.2f}" for v in c['power_spectrum']['per_modality'][m]['log10_ratio_per_band']))
