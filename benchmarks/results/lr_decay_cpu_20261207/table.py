"""run.sh's 4 mm runs (three arms, three seeds each) side by side, then each arm's mean and range over its three seeds: python table.py > table.md"""
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [f"{a}_s{s}" for s in (0, 1, 2) for a in ("const", "cosine", "wsd")]
ARMS = ("const", "cosine", "wsd")
MODS = ("t1n", "t1c", "t2w", "t2f")
checks = {r: json.loads((HERE / "realism" / f"{r}.json").read_text())["results"]["realism"]["checks"]
          for r in RUNS if (HERE / "realism" / f"{r}.json").is_file()}
losses = {}
for r in checks:
    rows = [json.loads(line) for line in (HERE / f"{r}.metrics.jsonl").read_text().splitlines()]
    losses[r] = statistics.mean(x["loss"] for x in rows if "loss" in x and x.get("step", 0) > 1000)


def measures(c: dict, r: str) -> dict[str, float]:
    m = {f"histogram W1 {k}": c["intensity_histogram"]["per_modality"][k]["wasserstein"] for k in MODS}
    m.update({f"coherence vs real {k}": c["detail_coherence"]["per_modality"][k]["difference"] for k in MODS})
    m.update({f"spectrum max abs log10 {k}": c["power_spectrum"]["per_modality"][k]["max_abs_log10_ratio"] for k in MODS})
    m["background RMS"] = c["background"]["synthetic_rms"]
    m["spread: robust sd over real's, geometric mean (real draws 0.84)"] = c["spread_across_cases"]["ratio"]
    m["spread: brain size"] = c["spread_across_cases"]["per_property"]["brain_size"]["ratio"]
    m["tumour share (real 0.78)"] = c["tumour_statistics"]["share_with_tumour"]["synthetic"]
    m["tumour size: median log10 WT fraction (real -1.70)"] = c["tumour_statistics"]["size_log10_wt_fraction"]["synthetic_median"]
    m["tumour sizes W1"] = c["tumour_statistics"]["size_log10_wt_fraction"]["wasserstein"]
    m["loss, steps 1001-1200 (logged)"] = losses[r]
    return m


table = {r: measures(c, r) for r, c in checks.items()}
names = list(next(iter(table.values())))
print("| 32 cases a run, 4 mm | " + " | ".join(table) + " |")
print("|---|" + "---|" * len(table))
for n in names:
    print(f"| {n} | " + " | ".join(f"{table[r][n]:.4f}" for r in table) + " |")
print()
print("| per arm over its seeds: mean (min-max) | " + " | ".join(ARMS) + " |")
print("|---|" + "---|" * len(ARMS))
for n in names:
    cells = []
    for arm in ARMS:
        v = [table[r][n] for r in table if r.startswith(arm + "_")]
        cells.append(f"{statistics.mean(v):.4f} ({min(v):.4f}-{max(v):.4f}, n {len(v)})" if v else "n/a")
    print(f"| {n} | " + " | ".join(cells) + " |")
