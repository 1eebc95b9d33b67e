"""Session 57: what the bf16 export costs scaleout seed 2. The job read seed 2 as trained (fp32, on the H100); a
shipped model is its bf16 export (the file FETCH brought back). The export generated the first 96 of the job's case
seeds (0..95) on the 2-core development machine under the same sampler (Heun 30, the model's own): CPU generators
give every machine the same starting noise, so case i here and the job's case i start alike. Both sets are read
with one instrument at 96 cases: the tracked feature net on evaluate's pipeline at the shipped scale
(quality_scale.eval_scale_overrides, as the image phase), Frechet with its jackknife against the real training
features the job kept (eval/real_features.npz), the job's fp32 rows being its kept features of cases 0..95
(eval/<run>/features.npz), the floor at 96 from the job's held-out features, the difference paired case by case
(image_metrics.frechet_difference); then the realism phase's checks on the bf16 set (192 real a side, both scales).

python read_bf16.py GEN_DIR [--image-only]   (GEN_DIR: medidiff generate's output, case_0000.. = seeds 0..; writes
image.json, features.npz, realism/ and realism_outside_tumour/ beside this file)"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RECORD = HERE.parent
REPO = HERE.parents[3]  # the repository (this file: benchmarks/results/<record>/cpu_seed2_bf16/)
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
from quality_common import _RealCases, realism_checks_of  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides  # noqa: E402

from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402

RUN = "x0_detail100_labels_lll100_skip005_scaleout_seed2"
CONFIG = RECORD / "configs" / f"{RUN}.yaml"
# session 53's copy of the data on the development machine (not kept): the same 1536 cases, manifest sha256 9e623571...
MANIFEST, ROOT = Path("/work/s53/lease/quality_scale/manifest.json"), Path("/work/s53/anat1536")


def frechet_row(f_syn: np.ndarray, real_train: np.ndarray) -> dict:
    row = {**im.feature_distances(f_syn, real_train), **im.frechet_jackknife(f_syn, real_train, rows_per_case=1)}
    return {"frechet": row["frechet"], "frechet_se": row["frechet_se"], "jackknife_cases": row["jackknife_cases"],
            "frechet_leave_one_out": row["frechet_leave_one_out"], "interval": row["frechet_interval"],
            "prdc": im.prdc(f_syn, real_train, k=im.PRDC_K)}


def main(gen: Path, image_only: bool = False) -> None:
    real = np.load(RECORD / "eval" / "real_features.npz")
    fp32_all = np.load(RECORD / "eval" / RUN / "features.npz")["synthetic"].astype(np.float64)
    cases = _RealCases(CONFIG, MANIFEST, ROOT, 4, [*eval_scale_overrides(), "eval.seeds=[0]"])
    net = cases.feature_net(REPO / "benchmarks" / "nets" / "anatomy1536_fold0" / "feature_net")
    # the instrument on this machine: its features of the first real training cases against the job's rows
    f_real4 = feat.extract_features(net, cases.train.images.float()).numpy()
    instrument = float(np.abs(f_real4 - real["train"][:4]).max() / np.abs(real["train"][:4]).max())
    bf16 = cases.synthetic_features(net, [gen]).astype(np.float64)
    n = len(bf16)
    np.savez_compressed(HERE / "features.npz", synthetic=bf16.astype(np.float32))
    seeds = [json.loads((gen / c / "provenance.json").read_text())["seed"] for c in sorted(p.name for p in gen.iterdir())]
    assert seeds == list(range(n)), "case i must be case seed i (the pairing)"
    fp32 = fp32_all[:n]
    rows = {"bf16_cpu": frechet_row(bf16, real["train"]), "fp32_h100": frechet_row(fp32, real["train"])}
    floor = im.floor_at_count(real["heldout"], real["train"], n, draws=200, seed=0)
    diff = im.frechet_difference(rows["bf16_cpu"], rows["fp32_h100"])
    # how alike the two sets' same-seed cases are: feature distance of case i to case i against the median over
    # other pairs (1 would say the export lost the case's identity); features z-scored by the real training
    # cases' mean and sd, as compare.py's case-order check
    mu, sd = real["train"].mean(0), real["train"].std(0) + 1e-6
    d = np.linalg.norm(((bf16 - mu) / sd)[:, None, :] - ((fp32 - mu) / sd)[None, :, :], axis=-1)
    same, other = np.diag(d), d[~np.eye(n, dtype=bool)]
    report = {"cases": n, "instrument_max_rel_diff_4_real_cases": instrument,
              "floor_at_count": {"frechet_median": floor["frechet"], "frechet_range": floor["frechet_range"],
                                 "draws": floor["draws"]},
              **{k: {**{kk: v for kk, v in r.items() if kk != "frechet_leave_one_out"},
                     "frechet_over_floor": r["frechet"] / floor["frechet"]} for k, r in rows.items()},
              "difference_bf16_minus_fp32": diff,
              "leave_one_out_correlation": float(np.corrcoef(rows["bf16_cpu"]["frechet_leave_one_out"],
                                                             rows["fp32_h100"]["frechet_leave_one_out"])[0, 1]),
              "same_seed_distance_over_other_pairs_median": float(np.median(same) / np.median(other))}
    (HERE / "image.json").write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps(report, indent=1, default=float), flush=True)
    if image_only:
        return
    realism_checks_of(CONFIG, MANIFEST, ROOT, {RUN: gen}, 192, HERE / "realism", sets=eval_scale_overrides())
    realism_checks_of(CONFIG, MANIFEST, ROOT, {RUN: gen}, 192, HERE / "realism_outside_tumour",
                      sets=normal_brain_scale_overrides())


if __name__ == "__main__":
    main(Path(sys.argv[1]), image_only="--image-only" in sys.argv[2:])
