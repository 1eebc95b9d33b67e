"""Text to volume: a flow model on wavelet latents conditioned on prompts through a frozen CLIP
text encoder (cross-attention), as in the text-to-CT systems GenerateCT (arXiv:2305.16037) and
MedSyn (arXiv:2310.03559) and in latent diffusion (arXiv:2112.10752).

BraTS has no radiology reports, so each case gets a factual prompt written from its label map
(modalities, tumour hemisphere and lobe, sub-region volumes; `medidiff manifest prompts`). The
encoder is read from a LOCAL folder (never downloaded); classifier-free guidance (arXiv:2207.12598)
comes from training with the empty prompt. Config: configs/text_flow.yaml.

    python pipelines/text_to_volume.py --out out/text --text-encoder models/clip-l \\
        --prompt "Tumour in the left frontal lobe." --set train.device=cuda
"""

from __future__ import annotations

from pathlib import Path

from medidiff.cli.common import recipe_parser
from medidiff.cli.main import main as medidiff
from medidiff.conditioning.prompts import add_prompts_to_manifest
from medidiff.config import dump_yaml, load_config, save_resolved
from medidiff.data.prepare import prepare_data
from medidiff.training.diffusion import run_dir_of
from medidiff.training.engine import resolve_device
from medidiff.training.stages import STAGES

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "text_flow.yaml"
# --smoke changes sizes and budgets only (the encoder's hidden size sets net.cross_attention_dim)
SMOKE = ["data.roi=[16, 16, 16]", "data.cache=memory", "latent.stats_batches=1", "net.channels=[16, 32]",
         "net.num_res_blocks=1", "net.norm_groups=8", "net.attention_levels=[false, true]", "net.head_dim=8",
         "net.mid_attention=false", "net.cross_attention_dim=null", "conditioning.text.max_length=16",
         "sampler.num_steps=3", "train.max_steps=3", "train.warmup_steps=1", "train.log_every=1",
         "train.precision=fp32", "train.device=cpu"]


def main(argv: list[str] | None = None) -> int:
    p = recipe_parser(__doc__)
    p.add_argument("--text-encoder", required=True, help="local text encoder folder (CLIP text tower or BERT-style)")
    p.add_argument("--prompt", action="append", default=[], help="prompt(s) to generate from (repeatable)")
    p.add_argument("--num", type=int, default=2, help="cases per prompt")
    args = p.parse_args(argv)
    out = Path(args.out).absolute()
    cfg = load_config(CONFIG, [f"output_dir={out / 'runs'}", f"conditioning.text.encoder={args.text_encoder}",
                               *(SMOKE if args.smoke else []), *args.overrides])
    if args.dry_run:
        print(dump_yaml(cfg))
        return 0

    # 1. data, and a factual prompt per case written into the manifest (editable by hand)
    manifest, cfg.data.root = prepare_data(args.data, out, shape=cfg.data.roi, seed=cfg.seed)
    cfg.data.manifest = str(out / "manifest_text.json")
    add_prompts_to_manifest(manifest, cfg.data.manifest, cfg.data.root or None, include=cfg.conditioning.text.facts)

    # 2. train with the frozen encoder outside the engine (prompts encoded once, cached) and export
    save_resolved(cfg, out, "text_flow.yaml")
    train, export = STAGES[cfg.stage]()
    train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.smoke)
    model = export(run_dir_of(cfg), out / "models" / cfg.name)

    # 3. generate each prompt --num times with classifier-free guidance (sampler.guidance_scale)
    prompts = args.prompt or ["Tumour in the left hemisphere.", "Tumour in the right hemisphere."]
    (out / "prompts.txt").write_text("".join(f"{q}\n" for q in prompts for _ in range(args.num)))
    return medidiff(["generate", "--model", str(model), "--prompts", str(out / "prompts.txt"),
                     "--num", str(len(prompts) * args.num), "--out", str(out / "generated"),
                     "--device", str(resolve_device(cfg.train.device)), "--no-progress"])


if __name__ == "__main__":
    from medidiff.cli.common import run_script

    raise SystemExit(run_script(main))
