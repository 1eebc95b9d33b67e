"""realism_before_after.json -> realism_summary.txt: per set and pipeline the histogram W1, the spectrum's max
|log10 ratio|, detail coherence (synthetic - real) per modality and the spread check's ratios.

    python summarise.py < realism_before_after.json > realism_summary.txt
"""
import json
import sys

s = json.load(sys.stdin)["sets"]
for name in dict.fromkeys(k.split("/")[0] for k in s):  # in the order run
    print("==", name)
    for p in ("old", "new"):
        c = s[f"{name}/{p}"]["checks"]
        hist = {m: round(v["wasserstein"], 3) for m, v in c["intensity_histogram"]["per_modality"].items()}
        spec = {m: round(v["max_abs_log10_ratio"], 2) for m, v in c["power_spectrum"]["per_modality"].items()}
        det = {m: round(v["synthetic"] - v["real"], 3) for m, v in c["detail_coherence"]["per_modality"].items()}
        print(f" {p}: hist W1 {hist} | spectrum {spec} | detail syn-real {det}")
        sp = c["spread_across_cases"]
        print(f"      spread ratio {sp['ratio']:.2f} per property",
              {k: round(v.get("ratio", float("nan")), 2) for k, v in sp["per_property"].items()})
