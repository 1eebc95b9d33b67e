"""Keep an evaluation feature net in the repository: its weights in float16, within the tracked-weight budget.

    python3 benchmarks/keep_feature_net.py SRC_DIR benchmarks/nets/anatomy1536_fold0/feature_net

SRC_DIR is a feature net that ``medidiff.eval.train_feature_net`` saved (``quality_scale`` writes OUT/feature_net;
``device_session.sh`` packs it into nets.tgz). Why: a kept net that lived off the repository was lost with the
development machine twice (sessions 32 and 33), and every job's own net is another instrument (the shipped model
read 14x to 43x the floor with five nets of one recipe). Tracked, one net measures every later job.

Why float16 and not the training's float32: all tracked .safetensors share the 25 MB of issue 16 with the shipped
model (23.2 MB), and ``load_segmenter`` copies the weights into float32 parameters, so the net computes in float32
from float16-rounded weights (float16, not bfloat16: 3 more mantissa bits, and SegResNet's weights stay far below
its range). The rounded file *is* the instrument: its sha256 is the one to record. Refuses a result that would take
the tracked weights over the budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

BUDGET_BYTES = 25_000_000  # issue 16: every tracked .safetensors in all
REPO = Path(__file__).resolve().parents[1]


def tracked_weight_bytes(exclude: Path | None = None) -> int:
    """Bytes of the repository's .safetensors that git tracks or would add (but ``exclude``, being replaced):
    a net kept but not yet committed counts too."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.safetensors"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    from medidiff.files import TMP_PREFIX

    # (a file being written through atomic_path, keep's own included, is not a kept net)
    paths = {(REPO / n).resolve() for n in names if n and not Path(n).name.startswith(TMP_PREFIX)}
    skip = exclude.resolve() if exclude is not None else None
    return sum(p.stat().st_size for p in paths if p.is_file() and p != skip)


def keep(src: Path, dst: Path) -> str:
    """Write SRC's config.json and its weights in float16 to DST; returns the weights' sha256. Nothing in DST
    changes unless both files are written (the weights first, through atomic_path)."""
    from medidiff.eval.features import FEATURE_NET_KIND
    from medidiff.files import atomic_path, file_sha256, write_text_atomic

    meta = json.loads((src / "config.json").read_text())  # a missing or broken recipe stops here, before any write
    if meta.get("kind") != FEATURE_NET_KIND or "init_filters" not in meta.get("recipe", {}):
        raise SystemExit(f"{src / 'config.json'}: not a saved feature net (kind {meta.get('kind')!r})")
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in load_file(str(src / "model.safetensors")).items()}
    target = dst / "model.safetensors"
    with atomic_path(target) as tmp:
        save_file(state, str(tmp))
        total = tracked_weight_bytes(exclude=target) + tmp.stat().st_size
        if total > BUDGET_BYTES:  # leaving the block by an exception removes the temporary file
            raise SystemExit(f"{dst}: the tracked weights would weigh {total / 1e6:.2f} MB, over the "
                             f"{BUDGET_BYTES / 1e6:.0f} MB budget: train a narrower net (eval.init_filters)")
    write_text_atomic(dst / "config.json", json.dumps({**meta, "weights_dtype": "float16"}, indent=2, default=str))
    digest = file_sha256(target)
    print(f"{dst}: {target.stat().st_size} bytes, sha256 {digest}; tracked weights {total / 1e6:.2f} MB")
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="a saved feature net folder (config.json + model.safetensors)")
    ap.add_argument("dst", type=Path, help="where to keep it in the repository")
    a = ap.parse_args(argv)
    keep(a.src, a.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
