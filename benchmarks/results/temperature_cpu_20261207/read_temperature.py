"""Session 58: the tempered set (gen_temperature.py) beside the untempered one on the same case seeds, one
instrument: the realism checks of evaluate's image task against the first 192 real training and held-out cases
(the brain scale, quality_scale.eval_scale_overrides, as every record), and Frechet on the tracked feature net
against every real training case (the fresh record's kept real features), paired case by case
(image_metrics.frechet_difference), beside the floor at the same count. The untempered set is session 57's CPU
generation of the same bf16 file (quality_scaleout_seeds23_h100_20261207/cpu_seed2_bf16/make_set.sh), its first
N case seeds.

    python read_temperature.py BASE_DIR TEMPERED_DIR [TEMPERED_DIR ...]   (writes read.json and realism/ beside this
    file; sets/ holds links to the first N cases of each folder, a scratch folder not kept)"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
from quality_common import _RealCases, realism_checks_of  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval import image_metrics as im  # noqa: E402

FRESH = REPO / "benchmarks" / "results" / "quality_scaleout_seed2_fresh_h100_20261207"
CONFIG = FRESH / "configs" / "x0_detail100_labels_lll100_skip005_scaleout_seed2.yaml"
# session 53's copy of the data on the development machine (not kept): the same 1536 cases, manifest sha256 9e623571...
MANIFEST, ROOT = Path("/work/s53/lease/quality_scale/manifest.json"), Path("/work/s53/anat1536")


def seeds_of(folder: Path) -> list[int]:
    return [json.loads((folder / c / "provenance.json").read_text())["seed"]
            for c in sorted(p.name for p in folder.iterdir() if (p / "provenance.json").exists())]


def main(base: Path, tempered: list[Path]) -> None:
    n = min(len(seeds_of(t)) for t in tempered)
    sets = {"tau_1.00": base, **{t.name: t for t in tempered}}
    for name, folder in sets.items():
        assert seeds_of(folder)[:n] == list(range(n)), f"{name}: case i must be case seed i (the pairing)"
    # the first n cases of each (the untempered set has more): a folder of links
    cut = HERE / "sets"
    for name, folder in sets.items():
        (cut / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            link = cut / name / f"case_{i:04d}"
            if not link.exists():
                link.symlink_to(folder / f"case_{i:04d}")
    real = np.load(FRESH / "eval" / "real_features.npz")
    cases = _RealCases(CONFIG, MANIFEST, ROOT, 4, [*eval_scale_overrides(), "eval.seeds=[0]"])
    net = cases.feature_net(REPO / "benchmarks" / "nets" / "anatomy1536_fold0" / "feature_net")
    rows, out = {}, {"cases": n}
    for name in sets:
        f = cases.synthetic_features(net, [cut / name]).astype(np.float64)
        r = {**im.feature_distances(f, real["train"]), **im.frechet_jackknife(f, real["train"], rows_per_case=1)}
        rows[name] = {"frechet": r["frechet"], "frechet_se": r["frechet_se"], "jackknife_cases": r["jackknife_cases"],
                      "frechet_leave_one_out": r["frechet_leave_one_out"], "interval": r["frechet_interval"],
                      "prdc": im.prdc(f, real["train"], k=im.PRDC_K)}
    floor = im.floor_at_count(real["heldout"], real["train"], n, draws=200, seed=0)
    out["floor"] = {"frechet_median": floor["frechet"], "frechet_range": floor["frechet_range"]}
    out["frechet"] = {k: {kk: v for kk, v in r.items() if kk != "frechet_leave_one_out"} | {"over_floor": r["frechet"] / floor["frechet"]}
                      for k, r in rows.items()}
    out["frechet_difference_vs_tau_1.00"] = {k: im.frechet_difference(rows[k], rows["tau_1.00"]) for k in rows if k != "tau_1.00"}
    realism = realism_checks_of(CONFIG, MANIFEST, ROOT, {k: cut / k for k in sets}, 192, HERE / "realism",
                                sets=eval_scale_overrides())
    out["realism"] = {}
    for name, r in realism.items():
        c = r["checks"]
        out["realism"][name] = {
            "spread_all": c["spread_across_cases"].get("ratio"),
            "spread": {p: v["ratio"] for p, v in c["spread_across_cases"]["per_property"].items()},
            "spread_pass": c["spread_across_cases"].get("pass"),
            "brain_size_w1": c["brain_size"]["wasserstein"], "brain_size_median_log10": c["brain_size"]["synthetic_median"],
            "coherence_vs_real": {m: v["difference"] for m, v in c["detail_coherence"]["per_modality"].items()},
            "spectrum_max_abs_log10": {m: v.get("max_abs_log10_ratio") for m, v in c["power_spectrum"].get("per_modality", {}).items()},
            "histogram_w1": {m: v.get("wasserstein") for m, v in c["intensity_histogram"].get("per_modality", {}).items()},
            "background": {k: c["background"].get(k) for k in ("synthetic_rms", "synthetic_fraction_nonzero", "pass")},
            "checks": {k: v.get("pass") for k, v in c.items()},
            "tumour": {k: c["tumour_statistics"].get(k) for k in ("share_with_tumour", "size_log10_wt_fraction",
                                                                  "share_with_several_tumours")},
        }
    (HERE / "read.json").write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
