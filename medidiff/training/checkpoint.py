"""Checkpoint folders: atomic completion, newest-valid lookup, pruning, export.

Layout of a run::

    RUN/checkpoints/step_00000500/        DeepSpeed shards (every rank writes its part)
                                 model.safetensors   full weights (gathered; module dtype)
                                 ema.safetensors     EMA weights, fp32
                                 state.json          step, data position, config hash...
                                 COMPLETE            written last, by rank 0, after a barrier

A checkpoint counts only once ``COMPLETE`` exists (it is created by an atomic rename), so a job
killed while saving leaves the previous checkpoint as the newest valid one. Nothing here calls
``torch.load``: weights are safetensors, state is JSON. DeepSpeed's own shards are pickles; they
are opened with torch's restricted unpickler before DeepSpeed loads them
(:func:`medidiff.training.engine.verify_checkpoint_pickles`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from medidiff.errors import MedidiffError
from medidiff.files import file_mode

__all__ = [
    "checkpoint_root",
    "tag_for_step",
    "write_atomic",
    "mark_complete",
    "is_complete",
    "list_complete",
    "latest_complete",
    "prune",
    "save_tensors",
    "load_tensors",
    "read_state",
]

_TAG_RE = re.compile(r"^step_(\d{8})$")
COMPLETE = "COMPLETE"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def tag_for_step(step: int) -> str:
    return f"step_{step:08d}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def mark_complete(ckpt_dir: Path, state: dict[str, Any]) -> None:
    """Write state.json then COMPLETE (rank 0, after every rank has finished writing)."""
    write_atomic(ckpt_dir / "state.json", json.dumps(state, indent=2, sort_keys=True))
    write_atomic(ckpt_dir / COMPLETE, json.dumps({"step": state.get("step")}))


def is_complete(ckpt_dir: Path) -> bool:
    return (ckpt_dir / COMPLETE).is_file() and (ckpt_dir / "state.json").is_file()


def list_complete(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _TAG_RE.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_complete(root: Path) -> Path | None:
    done = list_complete(root)
    return done[-1] if done else None


def prune(root: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints, and incomplete ones older
    than the newest complete one (left by a kill during a save). Returns what was removed."""
    done = list_complete(root)
    removed = []
    for p in done[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    if done:
        newest = int(_TAG_RE.match(done[-1].name).group(1))  # type: ignore[union-attr]
        for p in root.iterdir():
            m = _TAG_RE.match(p.name)
            if m and int(m.group(1)) < newest and not is_complete(p):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors save through a temporary name (contiguous CPU copies, shared storage split).

    The same tensors and metadata give the same bytes: safetensors writes a metadata dict of two
    or more keys in a random order (a hash map), so two exports of one checkpoint had different
    file hashes, and provenance's model_hash named them as two models. The header is rewritten
    with sorted keys (:func:`_sort_header`)."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(clean, str(tmp), metadata=metadata)
    _sort_header(tmp)
    os.chmod(tmp, file_mode())  # safetensors creates its file 0600: weights are shared like any output
    os.replace(tmp, path)


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place. Same keys, same compact
    separators, so the same length: the tensor data and its offsets do not move."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        text = raw.rstrip(b" ")  # the header is padded with spaces to 8-byte alignment
        header = json.loads(text)
        if isinstance(header.get("__metadata__"), dict):
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        ordered = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(ordered) != len(text):  # a format we do not know: leave the file as written
            return
        fh.seek(8)
        fh.write(ordered + raw[len(text):])


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MedidiffError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise MedidiffError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_state(ckpt_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt_dir / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MedidiffError(f"{ckpt_dir / 'state.json'}: unreadable checkpoint state ({exc})") from exc
