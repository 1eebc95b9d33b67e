"""What evaluate's old scale of a written case did to the Frechet readings (session 51): the same 48-case sets as
../width_pair_cpu_20261206/ (the shipped joint model untailed and with one tail step, seeds 0-47; both second stages
for its labels, seeds 48-95) through evaluate's synthetic pipeline as it was (each case's percentiles over its
non-zero voxels: the whole volume, its background being near 0 and not 0) and as it is now (over its brain,
medidiff.data.brain.written_brain_mask), on the tracked feature net against the whole training fold (features from
../frechet_reference_cpu_20261206/all_features.npz: the real pipeline did not change). Per set and pipeline: Frechet,
its jackknife interval, the ratio to the held-out floor at 48, PRDC; paired (new - old) per set.

    python region_frechet.py CONFIG MANIFEST ROOT FEATURE_NET ALL_FEATURES.npz NAME=FOLDER ... > region_frechet.json
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases, named_folder_sets  # noqa: E402

from medidiff.data.transforms import Pipeline, build_transforms, CheckValuesd  # noqa: E402
from medidiff.eval import data as evdata  # noqa: E402
from medidiff.eval import features as feat  # noqa: E402
from medidiff.eval import image_metrics as im  # noqa: E402

N = 48


def old_synthetic_transforms(dcfg) -> Pipeline:
    """evaluate's synthetic pipeline before session 51: the real pipeline (percentiles over the non-zero voxels)
    with ZeroBackgroundd (off: threshold 0) before the value checks."""
    base = list(build_transforms(dcfg, train=False, with_label=True).transforms)
    at = next(i for i, t in enumerate(base) if isinstance(t, CheckValuesd))
    return Pipeline(base[:at] + [evdata.ZeroBackgroundd("image", 0.0)] + base[at:])


def main() -> None:
    config, manifest, root, net_dir, npz = (Path(a) for a in sys.argv[1:6])
    sets = named_folder_sets(sys.argv[6:])
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    train_items, _, _ = evdata.real_items(manifest, root, 0)
    real = _RealCases(config, manifest, root, None, train_ids=[train_items[0]["case_id"]])  # the pipeline only
    net = real.feature_net(net_dir)
    saved = np.load(npz)
    f_train, f_held = saved["train"], saved["held"]
    pipelines = {"old": old_synthetic_transforms(real.dcfg),
                 "new": evdata.synthetic_transforms(real.dcfg, background=0.0, with_label=True)}
    feats = {}
    for name, folders in sets.items():
        for pname, tf in pipelines.items():
            parts = []
            for d in folders:
                items = evdata.synthetic_items(d, real.dcfg.modalities)
                cases = evdata.load_cases("synthetic", items, tf, with_label=True, progress=False)
                parts.append(feat.extract_features(net, cases.images.float()).numpy())
            feats[f"{name}/{pname}"] = np.concatenate(parts)
    # the stored old features of the joint model's sets (frechet_reference_cpu_20261206) must be what "old" gives
    for key, stored in (("joint_untailed/old", "gen_tail0"), ("joint_tail1/old", "gen_tail1")):
        if key in feats:
            print(f"{key} against the stored {stored}: max |diff| {np.abs(feats[key] - saved[stored]).max():.2e}",
                  file=sys.stderr)
    floor = im.floor_at_count(f_held, f_train, N, draws=20, seed=0)
    prdc_floor = im.prdc_floor(f_held, f_train, N, draws=im.PRDC_FLOOR_DRAWS, seed=0)
    rows, out = {}, {"reference": {"training_fold_cases": len(f_train), "heldout_cases": len(f_held)},
                     "floor_at_48": {"frechet": floor["frechet"], "range": floor["frechet_range"], "prdc": prdc_floor},
                     "sets": {}}
    for name, f in feats.items():
        assert len(f) == N, (name, len(f))
        rows[name] = {"frechet": im.frechet_distance(f, f_train), **im.frechet_jackknife(f, f_train)}
        pr = im.prdc(f, f_train)
        out["sets"][name] = {"frechet": rows[name]["frechet"], "interval": rows[name]["frechet_interval"],
                             "ratio_to_floor": rows[name]["frechet"] / floor["frechet"], "prdc": pr,
                             "prdc_reading": im.prdc_reading(pr, prdc_floor)}
    out["new_minus_old"] = {name: im.frechet_difference(rows[f"{name}/new"], rows[f"{name}/old"]) for name in sets}
    news = [f"{n}/new" for n in sets]
    out["paired_new"] = {f"{a} - {b}": im.frechet_difference(rows[a], rows[b])
                         for i, a in enumerate(news) for b in news[i + 1:]}
    json.dump(out, sys.stdout, indent=1, default=float)


if __name__ == "__main__":
    main()
