"""Where the tracked feature net (the fidelity segmenter) predicts tumour in tumour-free cases, real held-out
vs the shipped model's generated ones: per case the predicted WT volume, its components, and the mean scaled
intensity per modality inside the prediction, in the rest of the brain, and where the prediction sits.

    python tumour_free.py CONFIG MANIFEST ROOT FEATURE_NET N GENERATED OUTDIR
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/
from quality_common import _RealCases  # noqa: E402
from quality_scale import eval_scale_overrides  # noqa: E402

from medidiff.eval import _preload_real_segmenter  # noqa: E402
from medidiff.eval import data as evdata  # noqa: E402
from medidiff.eval.utility import SegmenterBank  # noqa: E402
from medidiff.data.brain import estimated_brain_mask  # noqa: E402

MODS = ("t1n", "t1c", "t2w", "t2f")


def describe(name, images, labels, ids, net, spacing, out, png_n=2):
    free = labels[:, 0].reshape(len(labels), -1).sum(1) == 0
    rows = []
    with torch.no_grad():
        for i in np.flatnonzero(free):
            img = images[i:i + 1].float()
            prob = torch.sigmoid(net(img))[0].numpy()  # (3, X, Y, Z)
            wt = prob[0] > 0.5
            x = img[0].numpy()
            brain = estimated_brain_mask(x)
            rest = brain & ~wt
            lab, n = ndimage.label(wt)
            sizes = np.bincount(lab.ravel())[1:] if n else np.array([0])
            c = np.array(ndimage.center_of_mass(wt)) if wt.any() else np.full(3, np.nan)
            centre = (np.array(wt.shape) - 1) / 2
            row = {"set": name, "case": ids[i], "wt_ml": float(wt.sum() * np.prod(spacing) / 1000),
                   "tc_ml": float((prob[1] > 0.5).sum() * np.prod(spacing) / 1000),
                   "et_ml": float((prob[2] > 0.5).sum() * np.prod(spacing) / 1000),
                   "components": int(n), "largest_share": float(sizes.max() / max(sizes.sum(), 1)),
                   "offset_vox": (c - centre).round(1).tolist(),
                   "in_wt": [float(x[m][wt].mean()) if wt.any() else None for m in range(4)],
                   "rest": [float(x[m][rest].mean()) for m in range(4)],
                   "brain_vox": int(brain.sum())}
            rows.append(row)
            if png_n > 0:
                png_n -= 1
                from medidiff.viz import write_png
                z = int(round(c[2])) if wt.any() else x.shape[3] // 2
                panels = []
                for m in range(4):
                    g = np.clip((x[m][:, :, z].T[::-1] + 1) / 2 * 255, 0, 255).astype(np.uint8)
                    rgb = np.stack([g, g, g], -1)
                    w = wt[:, :, z].T[::-1]
                    edge = w & ~ndimage.binary_erosion(w)
                    e = (prob[2][:, :, z].T[::-1] > 0.5)
                    eedge = e & ~ndimage.binary_erosion(e)
                    rgb[edge] = (255, 0, 0); rgb[eedge] = (255, 255, 0)
                    panels.append(np.kron(rgb, np.ones((3, 3, 1), dtype=np.uint8)))
                write_png(out / f"{name}_{ids[i]}_z{z}.png", np.concatenate(panels, 1))
    return rows


def main():
    config, manifest, root, netdir = (Path(a) for a in sys.argv[1:5])
    n = int(sys.argv[5]); gen = Path(sys.argv[6]); out = Path(sys.argv[7]); out.mkdir(exist_ok=True)
    torch.set_num_threads(2)
    real = _RealCases(config, manifest, root, n, [*eval_scale_overrides(), f"eval.feature_net={netdir}", "eval.seeds=[0]",
                                                  "eval.device=cpu"])
    cfg, dcfg = real.cfg, real.dcfg
    bank = SegmenterBank({}, cfg, progress=False)
    assert _preload_real_segmenter(bank, cfg, dcfg, evdata.file_sha256(manifest))
    net = bank.get("real", 0).eval()
    spacing = [float(s) * dcfg.downsample for s in dcfg.spacing]
    rows = describe("real", real.heldout.images, np.asarray(real.heldout.labels), list(real.heldout.case_ids), net, spacing, out)
    syn = real.synthetic(gen)
    rows += describe("generated", syn.images, np.asarray(syn.labels), list(syn.case_ids), net, spacing, out)
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(r["set"], r["case"], f"WT {r['wt_ml']:.0f} TC {r['tc_ml']:.0f} ET {r['et_ml']:.0f} mL comps {r['components']}"
              f" largest {r['largest_share']:.2f} off {r['offset_vox']} in {np.round(r['in_wt'], 2).tolist()} rest {np.round(r['rest'], 2).tolist()}")
    for s in ("real", "generated"):
        rr = [r for r in rows if r["set"] == s]
        print(s, len(rr), "rest-of-brain mean per modality", np.round(np.mean([r["rest"] for r in rr], 0), 3).tolist(),
              "in-WT", np.round(np.nanmean([[v if v is not None else np.nan for v in r["in_wt"]] for r in rr], 0), 3).tolist(),
              "brain voxels median", int(np.median([r["brain_vox"] for r in rr])))


main()
