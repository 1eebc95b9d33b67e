"""Session 56 (seed 0 on the CPU while the device was refused): the scaleout seed-0 model (bf16, session 53's) under Euler 20, 192 cases
generated on the CPU with case seeds 0..191 (CPU generators: the same noise as any machine's), read with the GPU
jobs' instrument: the tracked feature net (benchmarks/nets/anatomy1536_fold0/feature_net) on evaluate's pipeline at
the shipped scale (quality_scale.eval_scale_overrides, as the image phase), Frechet and its jackknife against the
real training features a GPU job kept (../../seedspread_h100_20261206/eval/real_features.npz: the same 1164 cases, the
same net; quality_common.image_evaluations_of would load all 1536 real cases, ~15 GB, beside the generation on the
24 GB machine); the realism phase's checks (quality_common.realism_checks_of, 192 real a side, both scales) as
quality_scale's realism phase runs them. The Frechet difference against session 53's Heun-30 reading of the same
case seeds pairs case i with case i (that job's leave-one-out figures).

python read_cpu.py GEN_DIR OUT_DIR [--image-only]   (GEN_DIR: medidiff generate's output, case_0000.. = seeds 0..;
--image-only: the features and Frechet alone, not the realism checks)"""
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[4]  # the repository (this file: benchmarks/results/<record>/cpu_seed0/)
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
from quality_common import _RealCases, realism_checks_of  # noqa: E402
from quality_scale import eval_scale_overrides, normal_brain_scale_overrides  # noqa: E402

from medidiff.eval import image_metrics as im  # noqa: E402

CONFIG = REPO / "benchmarks" / "results" / "quality_scaleout_h100_20261206" / "configs" / "x0_detail100_labels_lll100_skip005_scaleout_seed0.yaml"
# session 53's data on the development machine (not kept): the 1536 cases and their manifest (sha256 9e623571...)
MANIFEST, ROOT = Path("/work/s53/lease/quality_scale/manifest.json"), Path("/work/s53/anat1536")
RUN = "x0_detail100_labels_lll100_skip005_scaleout_seed0"


def main(gen: Path, out: Path, image_only: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = REPO / "benchmarks" / "results"
    real = np.load(results / "seedspread_h100_20261206" / "eval" / "real_features.npz")
    sets = [*eval_scale_overrides(), "eval.seeds=[0]"]
    cases = _RealCases(CONFIG, MANIFEST, ROOT, 4, sets)
    net = cases.feature_net(REPO / "benchmarks" / "nets" / "anatomy1536_fold0" / "feature_net")
    # the instrument on this machine: its features of the first real training cases against the GPU job's rows
    from medidiff.eval import features as feat
    f_real4 = feat.extract_features(net, cases.train.images.float()).numpy()
    instrument = float(np.abs(f_real4 - real["train"][:4]).max() / np.abs(real["train"][:4]).max())
    f_syn = cases.synthetic_features(net, [gen])
    np.savez_compressed(out / "features.npz", synthetic=f_syn.astype(np.float32))
    row = {**im.feature_distances(f_syn, real["train"]), **im.frechet_jackknife(f_syn, real["train"], rows_per_case=1)}
    s53 = json.loads((results / "quality_scaleout_h100_20261206" / "quality_scale.json").read_text())
    m = s53["per_run"][RUN]
    heun = {"frechet": m["frechet_3d"], "frechet_se": m["frechet_3d_se"], "jackknife_cases": m["frechet_3d_cases"],
            "frechet_leave_one_out": s53["frechet_leave_one_out"][RUN]}
    mine = {"frechet": row["frechet"], "frechet_se": row["frechet_se"], "jackknife_cases": row["jackknife_cases"],
            "frechet_leave_one_out": row["frechet_leave_one_out"]}
    floor = m["frechet_3d_floor"]
    report = {"cases": len(f_syn), "instrument_max_rel_diff_4_real_cases": instrument,
              "frechet_3d": row["frechet"], "frechet_3d_interval": row["frechet_interval"], "floor": floor,
              "frechet_se": row["frechet_se"], "frechet_leave_one_out": row["frechet_leave_one_out"],
              "frechet_over_floor": row["frechet"] / floor,
              "prdc": im.prdc(f_syn, real["train"], k=im.PRDC_K),
              "heun30_s53": {"frechet_3d": heun["frechet"], "frechet_over_floor": heun["frechet"] / floor},
              "difference_vs_heun30_s53": im.frechet_difference(mine, heun)}
    (out / "image.json").write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps({k: v for k, v in report.items() if k not in ("prdc", "frechet_leave_one_out")}, indent=1, default=float),
          flush=True)
    if image_only:
        return
    realism_checks_of(CONFIG, MANIFEST, ROOT, {RUN: gen}, 192, out / "realism", sets=eval_scale_overrides())
    realism_checks_of(CONFIG, MANIFEST, ROOT, {RUN: gen}, 192, out / "realism_outside_tumour",
                      sets=normal_brain_scale_overrides())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), image_only="--image-only" in sys.argv[3:])
