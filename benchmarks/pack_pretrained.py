"""Pack a trained model folder as a shipped pretrained model (issue 16): bf16 weights, a card.

    python benchmarks/pack_pretrained.py MODEL_DIR anatomy_2mm --card card.json

Copies ``config.json`` and ``codec/`` unchanged, writes ``model.safetensors`` with the EMA weights
cast to bf16 (half the bytes; the loader copies them into the fp32 net), and ``card.json``: the
given card (how it was trained, data, metrics) plus the fp32 source's sha256 and the bf16 file's
size. Refuses a result over ``--max-mb`` (25 MB by the issue's budget for the repository).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from medidiff.files import file_sha256
from medidiff.training.checkpoint import load_tensors, save_tensors

PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "medidiff" / "pretrained"


def shipped_config(meta: dict) -> dict:
    """The model's config.json without the trainer's paths (the GPU host's /tmp/job/... folders mean
    nothing to a user and publish a file system layout): data.manifest, data.root and output_dir
    become "". What the model trained on stays in ``training_data`` (the manifest's sha256 and fold,
    recorded at export), which is what generate and evaluate check."""
    config = dict(meta["config"])
    config["data"] = {**config.get("data", {}), "manifest": "", "root": ""}
    config["output_dir"] = ""
    return {**meta, "config": config}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model folder (medidiff export / RUN/model)")
    ap.add_argument("folder", help="folder name under medidiff/pretrained/")
    ap.add_argument("--card", type=Path, required=True, help="JSON: training command, data, metrics")
    ap.add_argument("--max-mb", type=float, default=25.0)
    args = ap.parse_args(argv)
    out = PRETRAINED_ROOT / args.folder
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # copyfile, not copy/copytree: a model fetched read-only keeps none of its modes here (umask's)
    (out / "codec").mkdir()
    for name in (f"codec/{f.name}" for f in (args.model / "codec").iterdir()):
        shutil.copyfile(args.model / name, out / name)
    (out / "config.json").write_text(json.dumps(shipped_config(json.loads((args.model / "config.json").read_text())),
                                                indent=2) + "\n")
    weights = args.model / "model.safetensors"
    save_tensors(out / "model.safetensors",
                 {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_tensors(weights).items()})
    size_mb = (out / "model.safetensors").stat().st_size / 1e6
    card = {**json.loads(args.card.read_text()), "weights_dtype": "bfloat16",
            "source_weights_sha256": file_sha256(weights), "weights_mb": round(size_mb, 2)}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    if size_mb > args.max_mb:
        shutil.rmtree(out)
        raise SystemExit(f"{weights}: {size_mb:.1f} MB in bf16, over --max-mb {args.max_mb}")
    print(f"{out}: {size_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
