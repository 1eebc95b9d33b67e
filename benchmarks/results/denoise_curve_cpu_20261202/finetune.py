"""A short CPU fine-tune of the shipped model with another training-time distribution (a throwaway, kept
beside its results): does training at low noise teach the pass-through that denoise_curve.py finds
missing? Two arms from the same weights, batches and noise: the recipe's logit-normal times (control)
and uniform times; the model folder written is the shipped one with the fine-tuned weights.

    python finetune.py --arm control|uniform|low|noshift_tstd15 --steps 120 --data /work/anat/data \\
        --manifest /work/anat/manifest.json --out OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

# low: times almost only below 0.1 (median 0.044 after the shift): can the net learn to keep the detail
# of a nearly clean input at all, given the steps? (Not a recipe: it would forget the high noise levels.)
# noshift_tstd15 (session 21, ../rim_denoise_cpu_20261202/): the quality_scale variants' low-noise levers together,
# no resolution shift and logit std 1.5 (2.5 % of times below t = 0.05 against the recipe's 0.01 %)
ARMS = {"control": {}, "uniform": {"time_sampling": "uniform"}, "low": {"logit_mean": -3.5, "logit_std": 0.7},
        "noshift_tstd15": {"time_shift": False, "logit_std": 1.5}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", choices=list(ARMS), required=True)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--data", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from safetensors.torch import save_file

    from medidiff.data.dataset import collate_cases, manifest_datasets
    from medidiff.generation import DiffusionPipeline
    from medidiff.objectives import build_objective
    from medidiff.pretrained import model_path
    from medidiff.training.diffusion import DiffusionLoss, net_divisor

    torch.manual_seed(0)
    src = Path(model_path("anatomy-2mm"))
    pipe = DiffusionPipeline.from_pretrained(src)
    cfg = pipe.cfg
    cfg = replace(cfg, data=replace(cfg.data, manifest=args.manifest, root=args.data, cache="none", num_workers=0),
                  objective=replace(cfg.objective, **ARMS[args.arm]))
    train, _ = manifest_datasets(cfg.data, args.out / "run", divisor=net_divisor(cfg, pipe.codec), with_label=True,
                                 train_transforms=False)
    net = pipe.net.float().train()
    objective = build_objective(cfg.objective, pipe.codec.channel_names)
    loss_fn = DiffusionLoss(cfg, pipe.codec, objective)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(1)  # the same cases in both arms
    gen = torch.Generator().manual_seed(2)  # the same noise stream in both arms (times differ by the arm)
    log = []
    t0 = time.perf_counter()
    for step in range(args.steps):
        idx = torch.randint(len(train), (args.batch,), generator=order).tolist()
        batch = collate_cases([train[i] for i in idx])
        loss, _ = loss_fn(net, batch, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        log.append(float(loss))
        if step % 10 == 0:
            print(f"{args.arm} step {step} loss {loss.item():.5f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)
    dest = args.out / args.arm
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    weights = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in net.state_dict().items()}
    save_file(weights, str(dest / "model.safetensors"))
    (args.out / f"{args.arm}_loss.json").write_text(json.dumps({"arm": args.arm, "steps": args.steps, "lr": args.lr,
                                                                "batch": args.batch, "loss": log}))
    print(f"{args.arm}: {args.steps} steps in {time.perf_counter() - t0:.0f} s -> {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
