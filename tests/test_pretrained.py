"""Shipped pretrained models: small, bf16, documented, loadable by a short name, and brain-like."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors import safe_open

from medidiff.cli.main import main
from medidiff.generation import DiffusionPipeline
from medidiff.pretrained import PRETRAINED, PRETRAINED_DEMO, model_path, pretrained_folder

CARD_KEYS = {"summary", "trained", "data", "metrics", "commands", "source_weights_sha256", "weights_mb"}


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_model_is_small_bf16_carded_and_loads(name):
    folder = pretrained_folder(name)
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 25e6  # the repository's budget for shipped weights
    with safe_open(str(weights), framework="pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"BF16"}
    card = json.loads((folder / "card.json").read_text())
    assert CARD_KEYS <= set(card), CARD_KEYS - set(card)
    # no trainer's paths (benchmarks/pack_pretrained.py): what it trained on is the recorded manifest hash
    meta = json.loads((folder / "config.json").read_text())
    assert (meta["config"]["data"]["manifest"], meta["config"]["data"]["root"], meta["config"]["output_dir"]) == ("", "", "")
    assert meta["training_data"]["manifest_sha256"]
    pipe = DiffusionPipeline.from_pretrained(folder)  # strict: every weight matches the config
    assert next(pipe.net.parameters()).dtype == torch.float32


def test_short_name_resolves_but_an_existing_path_wins(tmp_path, monkeypatch):
    assert model_path(PRETRAINED_DEMO) == str(pretrained_folder(PRETRAINED_DEMO))
    assert model_path("no-such-model") == "no-such-model"
    monkeypatch.chdir(tmp_path)
    (tmp_path / PRETRAINED_DEMO).mkdir()  # a user's own folder of that name
    assert model_path(PRETRAINED_DEMO) == PRETRAINED_DEMO
    with pytest.raises(KeyError, match="shipped: anatomy-2mm"):
        pretrained_folder("nope")


def test_generate_by_short_name_gives_a_brain_on_a_clean_background(tmp_path):
    """Three Euler steps on 2 CPU cores (a few seconds): one head in the middle of the grid and a
    background that is black, the checks grain and blobs failed before (issue 16)."""
    from scipy import ndimage

    out = tmp_path / "gen"
    assert main(["generate", "--model", PRETRAINED_DEMO, "--num", "1", "--steps", "3", "--out", str(out),
                 "--no-progress"]) == 0
    case = out / "case_0000"
    prov = json.loads((case / "provenance.json").read_text())
    assert prov["steps"] == 3
    t1 = np.asarray(nib.load(str(case / "t1n.nii.gz")).dataobj, dtype=np.float32)
    t1 = (t1 - t1.min()) / (t1.max() - t1.min())
    head = ndimage.binary_fill_holes(t1 > 0.1)
    lab, n = ndimage.label(head)
    sizes = ndimage.sum(head, lab, index=np.arange(1, n + 1))
    head = ndimage.binary_dilation(lab == 1 + int(np.argmax(sizes)), iterations=2)
    assert 0.15 < head.mean() < 0.6  # one head, neither a speck nor the whole grid
    assert sizes.max() / sizes.sum() > 0.99  # no second blob
    assert np.sqrt((t1[~head] ** 2).mean()) < 0.02  # the background goal (<= 2% of the range)
    centre = np.array(ndimage.center_of_mass(head)) / np.array(t1.shape)
    assert np.all(np.abs(centre - 0.5) < 0.15)


def test_generate_compile_compiles_every_block_of_the_denoiser(tmp_path, monkeypatch):
    # --compile compiles the UNet's blocks as the cascade benchmark timed them (2.46 -> 1.60 s a case on
    # an H200); on a CPU inductor takes minutes, so each block's compile is recorded, not run
    from medidiff.nets.unet3d import Downsample, ResAttnBlock, Upsample

    compiled: list[str] = []
    for block in (ResAttnBlock, Downsample, Upsample):
        monkeypatch.setattr(block, "compile", lambda self, **kw: compiled.append(type(self).__name__), raising=False)
    assert main(["generate", "--model", PRETRAINED_DEMO, "--num", "1", "--steps", "1", "--compile",
                 "--out", str(tmp_path / "gen"), "--no-progress"]) == 0
    net = DiffusionPipeline.from_pretrained(pretrained_folder(PRETRAINED_DEMO)).net
    blocks = [m for m in net.modules() if isinstance(m, (ResAttnBlock, Downsample, Upsample))]
    assert len(compiled) == len(blocks) > 0
