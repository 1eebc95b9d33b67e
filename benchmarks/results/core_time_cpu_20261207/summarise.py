"""Summarise core_time.py's JSON files: per start time t_s, the core / rim radius ratio after sampling from t_s
against the input's (median and range of the change over cases, cases with a tumour left), TC's volume against
the input's, and the net's one-call x0 estimate's ratio change.
python summarise.py core_time.json [more.json ...]"""
import json
import sys

import numpy as np

rows = {}
for path in sys.argv[1:]:
    for r in json.load(open(path)):
        rows.setdefault(r["case"], {"ratio_in": r["ratio_in"], "tc_in": r["tc_in"], "runs": {}})["runs"].update(r["runs"])
cases = sorted(rows)
starts = sorted({float(t) for r in rows.values() for t in r["runs"]})
print(f"{len(cases)} real tumour cases; input ratio (after the codec's round trip) median "
      f"{np.median([rows[c]['ratio_in'] for c in cases]):.3f}\n")
print("| start time t_s | cases with TC after sampling | ratio after - input: median (min..max) | TC after / input: median "
      "(min..max) | x0 estimate's ratio - input: median (min..max) |")
print("|---|---|---|---|---|")


def cell(v):
    v = np.asarray([x for x in v if np.isfinite(x)])
    return f"{np.median(v):+.3f} ({v.min():+.3f}..{v.max():+.3f})" if len(v) else "n/a"


for t in starts:
    k = str(t)
    got = [c for c in cases if k in rows[c]["runs"]]
    d = [rows[c]["runs"][k]["ratio"] - rows[c]["ratio_in"] for c in got]
    tc = [rows[c]["runs"][k]["tc"] / rows[c]["tc_in"] for c in got]
    e = [rows[c]["runs"][k]["x0_ratio"] - rows[c]["ratio_in"] for c in got]
    with_tc = sum(rows[c]["runs"][k]["tc"] > 0 for c in got)
    tcv = np.asarray(tc)
    print(f"| {t:g} | {with_tc} of {len(got)} | {cell(d)} | {np.median(tcv):.2f} ({tcv.min():.2f}..{tcv.max():.2f}) | {cell(e)} |")
print("\nper case (ratio after sampling; input first):")
for c in cases:
    print(f"{c}: in {rows[c]['ratio_in']:.3f} | " + " | ".join(
        f"t{t:g} {rows[c]['runs'][str(t)]['ratio']:.3f}" for t in starts if str(t) in rows[c]["runs"]))
