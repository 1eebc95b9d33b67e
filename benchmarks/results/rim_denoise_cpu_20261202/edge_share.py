"""How much of the recipe's latent grid objective.edge_weight weighs (issue 16, session 22): the share of the
40x48x40 latent positions in training.diffusion.edge_blocks and background_blocks over the 48 training cases of
the 64-case anatomy set (the recipe's 2 mm pipeline), and the share of the spatial loss weight the band gets at
weight 3 (background_weight 1).

    python edge_share.py MANIFEST DATA OUT.json
"""
import json
import sys
from dataclasses import replace
from pathlib import Path

from medidiff.config import load_config
from medidiff.data.transforms import build_transforms
from medidiff.eval import data as evdata
from medidiff.training.diffusion import background_blocks, edge_blocks

manifest, root, out = sys.argv[1:4]
cfg = load_config(str(Path(__file__).resolve().parents[3] / "configs" / "anatomy_2mm.yaml"))
d = evdata.eval_data_config(replace(cfg.data, manifest=manifest, root=root, cache="none", num_workers=0))
train, _, _ = evdata.real_items(manifest, root, 0)
images = evdata.load_cases("train", train, build_transforms(d, train=False), with_label=False, progress=False).images
edge, background = edge_blocks(images, (2, 2, 2)), background_blocks(images, (2, 2, 2))
e, b = float(edge.mean()), float(background.mean())
res = {"cases": len(images), "latent": list(edge.shape[2:]), "edge_share": round(e, 4), "background_share": round(b, 4),
       "background_outside_the_band": round(float((background * (1 - edge)).mean()), 4),
       "edge_share_of_weight_at_3": round(3 * e / (3 * e + (1 - e)), 4)}
Path(out).write_text(json.dumps(res, indent=1) + "\n")
print(res)
