"""Weights files: the same tensors and metadata give the same bytes (file hashes name models)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from medidiff.files import file_sha256
from medidiff.training import checkpoint as ckpt


def test_the_same_weights_and_metadata_give_the_same_file(tmp_path):
    # safetensors orders a metadata dict of several keys at random; 20 saves of 3 keys all came out
    # in one order with probability (1/6)**19 before the header was sorted
    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(3, dtype=torch.float16)}
    meta = {"weights": "ema", "step": "12", "z": "last"}
    hashes = set()
    for i in range(20):
        path = tmp_path / f"w{i}.safetensors"
        ckpt.save_tensors(path, tensors, metadata=meta)
        hashes.add(file_sha256(path))
    assert len(hashes) == 1
    loaded = ckpt.load_tensors(path)
    assert set(loaded) == set(tensors) and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == meta


def test_non_ascii_metadata_is_kept_and_sorted_too(tmp_path):
    meta = {"prompt": "ödème péri-tumoral", "k": "v", "a": "x"}  # the text cache stores prompts
    hashes = set()
    for i in range(12):
        path = Path(tmp_path / f"w{i}.safetensors")
        ckpt.save_tensors(path, {"x": torch.zeros(2)}, metadata=meta)
        hashes.add(file_sha256(path))
        with safe_open(str(path), framework="pt") as fh:
            assert fh.metadata() == meta
    assert len(hashes) == 1
    assert torch.equal(ckpt.load_tensors(path)["x"], torch.zeros(2))


def test_weights_files_get_the_umask_mode_not_0600(tmp_path):
    # safetensors' writer creates its file 0600: exported models were unreadable to the group
    import os

    old = os.umask(0o022)
    try:
        ckpt.save_tensors(tmp_path / "w.safetensors", {"x": torch.zeros(2)})
        assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        ckpt.save_tensors(tmp_path / "v.safetensors", {"x": torch.zeros(2)})
        assert (tmp_path / "v.safetensors").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_codec_segmenter_and_latent_cache_weights_get_the_umask_mode(tmp_path):
    # they wrote with safetensors directly (0600): an exported model's codec/ was unreadable to the group
    import os

    from torch import nn

    from medidiff.eval.segmentation import save_segmenter
    from medidiff.latents.codec import save_weights

    old = os.umask(0o027)
    try:
        written = [save_weights(tmp_path / "codec", {"w": torch.zeros(2)}),
                   save_segmenter(nn.Linear(2, 2), tmp_path / "seg", kind="feature", recipe={}) / "model.safetensors"]
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in written] == [0o640, 0o640]
