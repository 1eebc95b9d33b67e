"""Where along the flow time does the shipped model lose texture and tumours? (issue 16, session 19)

A throwaway diagnostic, kept beside its results: real held-out cases are noised to flow time t
(x_t = (1 - t) x0 + t eps, one noise draw per case, the same at every t) and the shipped model's
x0 estimate is compared with the truth, per t:

- detail power kept: power of the 7 detail sub-bands of x0_hat / of x0, per modality (1 = as sharp as
  the data; a posterior mean keeps less where the noise hides the detail);
- detail error: ||x0_hat - x0||^2 / ||x0||^2 over the detail sub-bands, per modality;
- the same two for the naive estimate x_t / (1 - t) (the noisy input, rescaled), whose detail power
  is inflated by the noise: where the model keeps less than the detail that x_t still shows clearly;
- WT kept: voxels of decoded WT > 0 in x0_hat / in x0 (cases with a tumour), and their Dice;
- the share of training times below t (logit-normal then the resolution shift, as the recipe trains).

    python denoise_curve.py --data /work/anat/data --manifest /work/anat/manifest.json --cases 8 --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

TIMES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def model_and_held_out(model: str, data: str, manifest: str, run_dir: Path):
    """The model's pipeline (gradients off), its config pointed at ``data`` / ``manifest``, and the held-out
    fold as the model's own data pipeline gives it (with labels, no training transforms)."""
    from dataclasses import replace

    from medidiff.data.dataset import manifest_datasets
    from medidiff.generation import DiffusionPipeline
    from medidiff.pretrained import model_path
    from medidiff.training.diffusion import net_divisor

    torch.set_grad_enabled(False)
    pipe = DiffusionPipeline.from_pretrained(model_path(model))
    cfg = replace(pipe.cfg, data=replace(pipe.cfg.data, manifest=manifest, root=data, cache="none", num_workers=0))
    _, held = manifest_datasets(cfg.data, run_dir, divisor=net_divisor(cfg, pipe.codec), with_label=True,
                                train_transforms=False)
    assert held is not None
    return pipe, cfg, held


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="anatomy-2mm")
    ap.add_argument("--data", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from medidiff.data.dataset import collate_cases
    from medidiff.training.diffusion import model_input
    from medidiff.utils.tensor import batch_time

    pipe, cfg, held = model_and_held_out(args.model, args.data, args.manifest, args.out / "run")
    codec, obj = pipe.codec, pipe.objective
    den = obj.denoiser(pipe.net)
    mods = list(cfg.data.modalities)
    m = len(mods)
    n_img = pipe.codec.in_channels  # 7: t1n t1c t2w t2f WT TC ET

    # training-time distribution (the recipe's: logit-normal, shifted for the latent grid)
    latent = codec.latent_shape((n_img, *cfg.data.roi))
    t_train = obj.sample_time(200_000, shape=latent[1:], generator=torch.Generator().manual_seed(0))
    below = {t: float((t_train < t).float().mean()) for t in TIMES}

    rows: dict[float, dict[str, list[float]]] = {t: {} for t in TIMES}
    t0 = time.perf_counter()
    for i in range(min(args.cases, len(held))):
        batch = collate_cases([held[i]])
        x, _ = model_input(batch, cfg)  # (1, 7, D, H, W) in [-1, 1]: images, then WT/TC/ET
        z0 = codec.encode(x)
        eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1000 + i))
        wt_true = x[:, m] > 0
        for t in TIMES:
            zt = (1 - t) * z0 + t * eps
            zhat = den(zt, batch_time(t, zt), {})
            naive = zt / (1 - t)
            r = rows[t]
            for k, mod in enumerate(mods):
                detail = [c for c in range(n_img, z0.shape[1]) if c % n_img == k]  # sub-band j > 0 of channel k
                p0 = z0[:, detail].pow(2).sum().item()
                r.setdefault(f"kept_{mod}", []).append(zhat[:, detail].pow(2).sum().item() / p0)
                r.setdefault(f"err_{mod}", []).append((zhat - z0)[:, detail].pow(2).sum().item() / p0)
                r.setdefault(f"naive_err_{mod}", []).append((naive - z0)[:, detail].pow(2).sum().item() / p0)
            if wt_true.any():
                wt_hat = codec.decode(zhat)[:, m] > 0
                inter = (wt_hat & wt_true).sum().item()
                r.setdefault("wt_kept", []).append(wt_hat.sum().item() / wt_true.sum().item())
                r.setdefault("wt_dice", []).append(2 * inter / (wt_hat.sum().item() + wt_true.sum().item()))
        print(f"case {i} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    table = {str(t): {"train_share_below": below[t], **{k: mean(v) for k, v in r.items()},
                      "n": {k: len(v) for k, v in r.items()}} for t, r in rows.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "denoise_curve.json").write_text(json.dumps({"model": args.model, "cases": args.cases,
                                                             "times": TIMES, "rows": table}, indent=1))
    keys = ["train_share_below", *[f"kept_{d}" for d in mods], *[f"err_{d}" for d in mods],
            *[f"naive_err_{d}" for d in mods], "wt_kept", "wt_dice"]
    lines = ["| t | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    for t in TIMES:
        lines.append(f"| {t} | " + " | ".join(f"{table[str(t)].get(k, float('nan')):.3f}" for k in keys) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
