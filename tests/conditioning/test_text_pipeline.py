"""Text conditioning end to end through the product: manifest prompts -> `medidiff train` with a
local tiny CLIP -> export (encoder recorded) -> `medidiff generate --prompts`."""

from __future__ import annotations

import json

import nibabel as nib
import pytest

from medidiff.cli.main import main
from medidiff.config import ConfigError, load_config
from medidiff.data.manifest import build_brats_manifest, read_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.generation import DiffusionPipeline

from .tiny_clip import write_tiny_clip


def test_train_and_generate_with_prompts(tmp_path, capsys):
    write_phantom_dataset(tmp_path / "data", 4, shape=(32, 32, 24), seed=0, tumour_fraction=1.0, progress=False)
    write_manifest(build_brats_manifest(tmp_path / "data", num_folds=2), tmp_path / "m.json")
    assert main(["manifest", "prompts", str(tmp_path / "m.json"), "-o", str(tmp_path / "mp.json"),
                 "--root", str(tmp_path / "data")]) == 0
    items = read_manifest(tmp_path / "mp.json")["training"]
    assert all(("left" in item["text"]) != ("right" in item["text"]) for item in items)
    clip = write_tiny_clip(tmp_path / "clip")
    overrides = [
        "name=text", f"output_dir={tmp_path / 'runs'}", f"data.manifest={tmp_path / 'mp.json'}",
        f"data.root={tmp_path / 'data'}", "data.fold=null", "data.roi=[16, 16, 16]", "data.cache=memory",
        f"conditioning.text.encoder={clip}", "conditioning.text.max_length=16", "conditioning.text.prompts=manifest",
        "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8", "net.attention_levels=[false, true]",
        "net.head_dim=8", "objective.type=flow", "objective.cond_drop_prob=0.2", "sampler.name=euler",
        "sampler.num_steps=3", "sampler.guidance_scale=2.0", "train.max_steps=3", "train.micro_batch=2",
        "train.precision=fp32", "train.device=cpu", "train.warmup_steps=1", "train.log_every=1",
    ]
    cfg_path = tmp_path / "text.yaml"
    cfg_path.write_text("{}\n")
    args = ["train", "-c", str(cfg_path)] + [a for o in overrides for a in ("--set", o)]
    assert main(args) == 0
    model = tmp_path / "runs" / "text" / "model"
    meta = json.loads((model / "config.json").read_text())
    assert meta["text_encoder"]["hidden_size"] == 32 and meta["net"]["cross_attention_dim"] == 32
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# one prompt for every case\nTumour in the left hemisphere.\n")
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(model), "--num", "2", "--out", str(out), "--prompts", str(prompts),
                 "--no-progress"]) == 0
    prov = json.loads((out / "case_0001" / "provenance.json").read_text())
    assert prov["prompt"] == "Tumour in the left hemisphere." and prov["guidance_scale"] == 2.0
    assert nib.load(out / "case_0001" / "t2f.nii.gz").shape == (16, 16, 16)
    # without prompts a text model refuses; with a different encoder it refuses too
    capsys.readouterr()
    assert main(["generate", "--model", str(model), "--num", "1", "--out", str(tmp_path / "g2")]) == 2
    assert "text-conditioned" in capsys.readouterr().err
    other = write_tiny_clip(tmp_path / "clip2", seed=1) if "seed" in write_tiny_clip.__code__.co_varnames else None
    if other is not None:
        with pytest.raises(Exception, match="not the one this model"):
            DiffusionPipeline.from_pretrained(model, text_encoder=other)


def test_text_config_cross_checks():
    with pytest.raises(ConfigError, match="flip_prob"):
        load_config(None, ["conditioning.text.encoder=x", "data.flip_prob=0.5"])
    with pytest.raises(ConfigError, match="cond_drop_prob"):
        load_config(None, ["conditioning.text.encoder=x", "sampler.guidance_scale=3.0"])
