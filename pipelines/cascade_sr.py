"""Cascade: a base model at half resolution, then a super-resolution stage to the full grid.

The cascaded diffusion recipe (CDM arXiv:2106.15282, SR3 arXiv:2104.07636; in 3D medical imaging
e.g. the MAISI family's coarse-to-fine generation, arXiv:2409.11169): the base model
(configs/wavelet_flow.yaml: wavelet latent + flow matching, WDM family arXiv:2402.19043, images
and WT/TC/ET masks together) learns global anatomy on the 2x-downsampled grid; the SR stage
(configs/cascade_sr.yaml) learns full-resolution detail given the upsampled low-res volume, with
Gaussian conditioning augmentation, trains on patches and samples the whole grid without seams.
Both use flow matching (arXiv:2210.02747; rectified flow arXiv:2209.03003), so sampling takes
30 + 10 Euler steps. --set applies to both stages; --base-set / --sr-set to one.

    python pipelines/cascade_sr.py --out out/cascade --smoke                   # seconds, phantoms
    python pipelines/cascade_sr.py --data /data/BraTS2023 --out out/cascade --set train.device=cuda
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from medidiff.cli.common import recipe_parser
from medidiff.cli.main import main as medidiff
from medidiff.config import dump_yaml, load_config, save_resolved
from medidiff.data.prepare import prepare_data
from medidiff.eval import run_evaluation
from medidiff.training.diffusion import run_dir_of
from medidiff.training.engine import resolve_device
from medidiff.training.stages import STAGES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# the base: wavelet_flow.yaml with 3 UNet levels, which divide its 60x60x40 latent grid
# (240x240x160 / 2 / wavelet 2); its grid is the SR stage's data.roi / cascade.scale (set below)
BASE = ["name=cascade_base", "net.channels=[64, 128, 256]"]
# --smoke changes sizes and budgets only, so the whole recipe runs in seconds on a CPU
SMOKE = ["data.roi=[32, 32, 32]", "data.cache=memory", "data.num_workers=0", "train.micro_batch=1", "latent.stats_batches=1", "net.channels=[16, 32]",
         "net.num_res_blocks=1", "net.norm_groups=8", "cascade.patch_size=[16, 16, 16]", "sampler.num_steps=3",
         "train.max_steps=3", "train.warmup_steps=1", "train.log_every=1", "train.precision=fp32",
         "train.device=cpu", "eval.seeds=[0]", "eval.steps=2"]


def main(argv: list[str] | None = None) -> int:
    p = recipe_parser(__doc__)
    p.add_argument("--base-set", action="append", default=[], metavar="KEY=VALUE", help="base model only")
    p.add_argument("--sr-set", action="append", default=[], metavar="KEY=VALUE", help="SR stage only")
    p.add_argument("--num", type=int, default=4, help="cases to generate")
    p.add_argument("--evaluate", action="store_true", help="score the cases (eval: section of the SR config)")
    args = p.parse_args(argv)
    out = Path(args.out).absolute()
    shared = [f"output_dir={out / 'runs'}", *(SMOKE if args.smoke else []), *args.overrides]
    sr = load_config(CONFIGS / "cascade_sr.yaml", [*shared, *args.sr_set])
    low_res = [f"data.roi={list(sr.data.roi)}", f"data.downsample={sr.cascade.scale}",  # what makes them chain
               f"data.spacing={list(sr.data.spacing)}"]
    base = load_config(CONFIGS / "wavelet_flow.yaml", [*BASE, *shared, *args.base_set, *low_res])
    if args.dry_run:
        print(dump_yaml(base), "---", dump_yaml(sr), sep="\n")
        return 0

    # 1. data: an existing manifest, or a BraTS-layout folder (phantoms when --data is omitted)
    base.data.manifest, base.data.root = prepare_data(args.data, out, shape=sr.data.roi, seed=sr.seed)
    sr.data.manifest, sr.data.root = base.data.manifest, base.data.root

    # 2. train both stages (independent: on several GPUs, run them as two jobs) and export them
    models = {}
    for cfg in (base, sr):
        save_resolved(cfg, out, f"{cfg.name}.yaml")
        train, export = STAGES[cfg.stage]()
        train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.smoke)
        models[cfg.stage] = export(run_dir_of(cfg), out / "models" / cfg.name)

    # 3. generate: base on the half grid -> SR to the full grid (CascadePipeline) -> NIfTI + seg; score
    device = str(resolve_device(sr.train.device))
    code = medidiff(["generate", "--model", str(models["diffusion"]), "--sr-model", str(models["sr"]),
                     "--num", str(args.num), "--out", str(out / "generated"), "--device", device, "--no-progress"])
    if code == 0 and args.evaluate:
        run_evaluation(sr, replace(sr.eval, device=device), real_manifest=sr.data.manifest, root=sr.data.root
                       or None, synthetic_dir=out / "generated", out_dir=out / "report", progress=not args.smoke,
                       command=" ".join(["python", f"pipelines/{Path(__file__).name}", *(argv if argv is not None else sys.argv[1:])]))
    return code


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
