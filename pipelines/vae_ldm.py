"""VAE latent diffusion: the LDM (arXiv:2112.10752) / MAISI (arXiv:2409.11169) family.

Two stages: a 3D KL autoencoder (configs/vae.yaml, stage vae) compresses the 4 modalities 4x per
axis; its exported codec (weights + latent mean/std fitted on the training split) is frozen and a
flow-matching UNet (arXiv:2210.02747; rectified flow arXiv:2209.03003, as in MAISI-v2) learns
its latents (configs/vae_ldm.yaml, latent.type: pretrained). Improvements over the 2D-LDM recipe
ported to 3D: per-voxel normalisation so tiled decoding equals whole decoding, posterior means
(no noise floor in the diffusion loss), ~30 Euler steps instead of 1000 DDPM steps.
--set applies to both stages; --vae-set / --ldm-set to one.

    python pipelines/vae_ldm.py --out out/ldm --smoke                          # seconds, phantoms
    python pipelines/vae_ldm.py --data /data/BraTS2023 --out out/ldm --set train.device=cuda --evaluate
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
# --smoke changes sizes and budgets only, so the whole recipe runs in seconds on a CPU
SMOKE = ["data.roi=[16, 16, 16]", "data.cache=memory", "data.num_workers=0", "vae.channels=[8, 8, 8]", "vae.stats_batches=1",
         "net.channels=[16, 32]", "net.attention_levels=[false, true]", "net.head_dim=16", "net.num_res_blocks=1",
         "net.norm_groups=8", "sampler.num_steps=3", "train.max_steps=3", "train.warmup_steps=1",
         "train.log_every=1", "train.precision=fp32", "train.device=cpu", "eval.seeds=[0]", "eval.steps=2"]


def main(argv: list[str] | None = None) -> int:
    p = recipe_parser(__doc__)
    p.add_argument("--vae-set", action="append", default=[], metavar="KEY=VALUE", help="VAE stage only")
    p.add_argument("--ldm-set", action="append", default=[], metavar="KEY=VALUE", help="diffusion stage only")
    p.add_argument("--num", type=int, default=4, help="cases to generate")
    p.add_argument("--evaluate", action="store_true", help="score the cases (eval: section of vae_ldm.yaml)")
    args = p.parse_args(argv)
    out = Path(args.out).absolute()
    shared = [f"output_dir={out / 'runs'}", *(SMOKE if args.smoke else []), *args.overrides]
    vae = load_config(CONFIGS / "vae.yaml", [*shared, *args.vae_set])
    # the codec the diffusion stage loads is the VAE exported in step 2
    ldm = load_config(CONFIGS / "vae_ldm.yaml", [*shared, *args.ldm_set, f"latent.path={out / 'models' / vae.name}"])
    if args.dry_run:
        print(dump_yaml(vae), "---", dump_yaml(ldm), sep="\n")
        return 0

    # 1. data: an existing manifest, or a BraTS-layout folder (phantoms when --data is omitted)
    vae.data.manifest, vae.data.root = prepare_data(args.data, out, shape=ldm.data.roi, seed=ldm.seed)
    ldm.data.manifest, ldm.data.root = vae.data.manifest, vae.data.root

    # 2. the VAE first (its export fits the latent statistics), then diffusion on its latents
    for cfg in (vae, ldm):
        save_resolved(cfg, out, f"{cfg.name}.yaml")
        train, export = STAGES[cfg.stage]()
        train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.smoke)
        model = export(run_dir_of(cfg), out / "models" / cfg.name)

    # 3. generate: noise -> latents -> VAE decode -> NIfTI; then optionally score them
    device = str(resolve_device(ldm.train.device))
    code = medidiff(["generate", "--model", str(model), "--num", str(args.num), "--out", str(out / "generated"),
                     "--device", device, "--no-progress"])
    if code == 0 and args.evaluate:
        run_evaluation(ldm, replace(ldm.eval, device=device), real_manifest=ldm.data.manifest, root=ldm.data.root
                       or None, synthetic_dir=out / "generated", out_dir=out / "report", progress=not args.smoke,
                       command=" ".join(["python", f"pipelines/{Path(__file__).name}", *(argv if argv is not None else sys.argv[1:])]))
    return code


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
