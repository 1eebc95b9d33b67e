"""gap_table.md: frechet_gap.py's variants for the shipped model's sets without and with the tail step, side by side:
this lease's 96 cases a set (seeds 5000-5095) and ../tail_frechet_cpu_20261206's 48 (seeds 0-47, CPU).

    python gap_table.py > gap_table.md
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETS = {"H200, 96 cases": (HERE / "gap_shipped_tail0.json", HERE / "gap_shipped_tail1.json"),
        "CPU, 48 cases": (HERE.parent / "tail_frechet_cpu_20261206/gap48_tail0.json",
                          HERE.parent / "tail_frechet_cpu_20261206/gap48_tail1.json")}

print("| variant (generated, real held-out and reference changed alike) | set | no tail [95 %] | tail 1 [95 %] "
      "| floor (held-out) |")
print("| --- | --- | --- | --- | --- |")
for label, (f0, f1) in SETS.items():
    a, b = (json.loads(f.read_text())["variants"] for f in (f0, f1))
    for name, ra in a.items():
        rb = b[name]
        cell = lambda r: f"{r['generated']['all']:.1f} [{r['interval'][0]:.1f}, {r['interval'][1]:.1f}]"  # noqa: E731
        print(f"| {name} | {label} | {cell(ra)} | {cell(rb)} | {ra['floor']['all']:.2f} |")
