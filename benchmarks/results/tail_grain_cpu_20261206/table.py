"""The realism reports of run.sh and run_steps.sh side by side: python table.py > table.md"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
names = {"tail0": "Heun 30 (as shipped)", "tail1": "Heun 30 + one tail step", "euler30": "Euler 30", "heun60": "Heun 60",
         "euler15": "Euler 15"}
rows = {}
for key, label in names.items():
    f = HERE / "realism" / f"{key}.json"
    if f.is_file():
        rows[label] = json.loads(f.read_text())["results"]["realism"]["checks"]
print("| 12 cases a set, evaluate's scale | " + " | ".join(rows) + " |")
print("|---|" + "---|" * len(rows))
mods = ("t1n", "t1c", "t2w", "t2f")
def line(label, f):
    print(f"| {label} | " + " | ".join(f(c) for c in rows.values()) + " |")
line("detail coherence vs real t1n / t1c / t2w / t2f (< 0 grain)",
     lambda c: " / ".join(f"{c['detail_coherence']['per_modality'][m]['difference']:+.3f}" for m in mods))
line("background RMS / non-zero share", lambda c: f"{c['background']['synthetic_rms']:.4f} / {c['background']['synthetic_fraction_nonzero']:.3f}")
line("spectrum max abs log10 t1n / t1c / t2w / t2f",
     lambda c: " / ".join(f"{c['power_spectrum']['per_modality'][m]['max_abs_log10_ratio']:.2f}" for m in mods))
line("histogram W1 t1n / t1c / t2w / t2f",
     lambda c: " / ".join(f"{c['intensity_histogram']['per_modality'][m]['wasserstein']:.3f}" for m in mods))
