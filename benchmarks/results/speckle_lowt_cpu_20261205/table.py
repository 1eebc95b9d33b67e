"""real4mm_table.md from realism4mm.py's JSON reports: python table.py REPORT_DIR [NAME ...] > real4mm_table.md
(NAME: the reports to tabulate, in order; default this record's.)"""
import json
import sys
from pathlib import Path

NAMES = ["group_s0_3600", "ft_ctl_4800", "ft_mean05_4800", "ft_tstd15_4800", "ft_uniform_4800", "ft_ctl_7200",
         "ft_mean05_7200", "ft_ctl_4800_s1", "ft_mean05_4800_s1", "skip035_s0_3600",
         "group_s1_3600", "skip035_s1_3600", "ft_ctl_7200_s1", "skip035_s0_7200", "skip035_s1_7200"]
MODS = ["t1n", "t1c", "t2w", "t2f"]
NAMES = sys.argv[2:] or NAMES
rows: dict[str, list[str]] = {}
for n in NAMES:
    c = json.loads((Path(sys.argv[1]) / f"{n}.json").read_text())["results"]["realism"]["checks"]

    def add(k: str, v: str) -> None:
        rows.setdefault(k, []).append(v)
    add("background non-zero share / RMS (real 0 / 0)",
        f"{c['background']['synthetic_fraction_nonzero']:.3f} / {c['background']['synthetic_rms']:.4f}")
    ps = c["power_spectrum"]["per_modality"]
    add("spectrum max abs log10 t1n/t1c/t2w/t2f", " / ".join(f"{ps[m]['max_abs_log10_ratio']:.2f}" for m in MODS))
    add("top band power, of real's", " / ".join(f"{10 ** ps[m]['log10_ratio_per_band'][-1]:.2f}" for m in MODS))
    dc = c["detail_coherence"]["per_modality"]
    add("detail coherence (real " + "/".join(f"{dc[m]['real']:.2f}" for m in MODS) + ")",
        " / ".join(f"{dc[m]['synthetic']:.2f}" for m in MODS))
    h = c["intensity_histogram"]["per_modality"]
    add("histogram W1", " / ".join(f"{h[m]['wasserstein']:.3f}" for m in MODS))
    s = c["spread_across_cases"]
    pp = s["per_property"]
    add("spread across cases: geometric mean (pass)", f"{s['ratio']:.2f} ({s.get('pass')})")
    add("spread: brain size ; levels", f"{pp['brain_size']['ratio']:.2f} ; " + " / ".join(f"{pp['level_' + m]['ratio']:.2f}" for m in MODS))
    b = c["brain_size"]
    add("brain size W1 (pass)", f"{b['wasserstein']:.3f} ({b['pass']})")
    t = c["tumour_statistics"]
    add("share with a tumour (real) / size W1", f"{t['share_with_tumour']['synthetic']:.2f} ({t['share_with_tumour']['real']:.2f}) / "
        f"{t['size_log10_wt_fraction']['wasserstein']:.2f}")
    tc = c["tumour_contrast"]
    add("ET - normal, t1c (real)", f"{tc['et_contrast']['t1c']['synthetic_median']:.2f} ({tc['et_contrast']['t1c']['real_median']:.2f})")
    add("edema - normal, t2w / t2f (real)", f"{tc['ed_contrast']['t2w']['synthetic_median']:.2f} / {tc['ed_contrast']['t2f']['synthetic_median']:.2f} "
        f"({tc['ed_contrast']['t2w']['real_median']:.2f} / {tc['ed_contrast']['t2f']['real_median']:.2f})")
    add("diversity ratio", f"{c['diversity']['ratio']:.2f}")
    add("checks failed", ", ".join(k for k, v in c.items() if v.get("pass") is False))
print("| reading | " + " | ".join(NAMES) + " |")
print("|---" * (len(NAMES) + 1) + "|")
for k, v in rows.items():
    print(f"| {k} | " + " | ".join(v) + " |")
