"""evaluate's realism checks (the image task's, medidiff.eval.realism) on written generated sets through the
synthetic pipeline as it was before session 51 (each case's percentiles over its non-zero voxels: the whole volume)
and as it is now (over its brain), against the first N real training and held-out cases of the manifest (the
reference built once). Writes one JSON: per set and pipeline, every check's result (spectra dropped).

    python realism_before_after.py CONFIG MANIFEST ROOT N NAME=FOLDER ... > realism_before_after.json
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_common import _RealCases, named_folder_sets  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402
from region_frechet import old_synthetic_transforms  # noqa: E402

from medidiff.eval import data as evdata  # noqa: E402
from medidiff.eval import real_reference_for, realism_checks_for  # noqa: E402


def main() -> None:
    config, manifest, root, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    real = _RealCases(config, manifest, root, n, eval_scale_overrides())
    cfg, dcfg = real.cfg, real.dcfg
    reference = real_reference_for(cfg, real.train.images, real.heldout.images, real_labels=real.train.labels,
                                   heldout_labels=real.heldout.labels)
    pipelines = {"old": old_synthetic_transforms(dcfg),
                 "new": evdata.synthetic_transforms(dcfg, background=0.0, with_label=True)}
    out = {"real": {"train": len(real.train), "heldout": len(real.heldout)}, "sets": {}}
    for name, folders in named_folder_sets(sys.argv[5:]).items():
        for pname, tf in pipelines.items():
            real._syn_tf = tf
            synthetic = real.synthetic(folders[0])
            r = realism_checks_for(cfg, synthetic.images, reference, modalities=dcfg.modalities,
                                   synthetic_labels=synthetic.labels)
            r.pop("spectra", None)
            out["sets"][f"{name}/{pname}"] = r
            print(name, pname, {k: v.get("pass") for k, v in r["checks"].items()}, file=sys.stderr, flush=True)
    json.dump(out, sys.stdout, indent=1, default=float)


if __name__ == "__main__":
    main()
