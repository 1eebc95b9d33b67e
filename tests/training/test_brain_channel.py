"""conditioning.generate_brain: the brain mask generated as one more channel, and each generated case
cut to the background outside it (what skull stripping leaves real data)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medidiff.cli.main import main
from medidiff.config import load_config
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.eval.codec import codec_reconstruction
from medidiff import generation
from medidiff.generation import export_run
from medidiff.training.diffusion import (build_codec_for, channel_names, model_input, resolve_net_config, run_dir_of,
                                         split_generated, train_diffusion)

SHAPE = (16, 16, 16)


def _cfg(*extra: str):
    return load_config(None, ["data.label_mode=regions", "conditioning.generate_labels=true",
                              "conditioning.generate_brain=true", *extra])


def test_the_brain_channel_is_where_any_modality_is_above_the_background():
    cfg = _cfg()
    assert channel_names(cfg) == [*cfg.data.modalities, "WT", "TC", "ET", "brain"]
    assert channel_names(load_config(None, ["conditioning.generate_brain=true"]))[-1] == "brain"  # without labels
    image = torch.full((1, 4, 4, 4, 4), -1.0)
    image[0, 2, 1, 1, 1] = -0.999  # one modality just above the background: brain (a partial-volume edge voxel)
    image[0, :, 2, 2, 2] = 0.5
    x, cond = model_input({"image": image, "label": torch.zeros(1, 3, 4, 4, 4, dtype=torch.uint8)}, cfg)
    assert cond is None and x.shape == (1, 8, 4, 4, 4)
    brain = x[0, 7]
    assert set(brain.unique().tolist()) == {-1.0, 1.0}
    assert brain[1, 1, 1] == 1 and brain[2, 2, 2] == 1 and (brain == 1).sum() == 2
    assert torch.equal(x[0, 4:7], -torch.ones(3, 4, 4, 4))  # the regions, untouched


def test_a_generated_case_is_cut_to_its_brains_largest_component_with_holes_filled(caplog):
    cfg = _cfg()
    x = np.full((8, 12, 12, 12), -1.0, np.float32)
    x[:4] = -0.9  # a faint haze everywhere
    x[:4, 3:9, 3:9, 3:9] = 0.4  # the brain's images
    x[4, 4:6, 4:6, 4:6] = 1.0  # a WT region inside it, and one outside it
    x[4, 0:2, 0:2, 0:2] = 1.0
    x[7, 3:9, 3:9, 3:9] = 1.0  # the generated brain mask ...
    x[7, 5, 5, 5] = -1.0  # ... with a hole (filled: the voxel stays brain)
    x[7, 10, 10, 10] = 1.0  # ... and a speck apart from it (dropped: not the largest component)
    images, regions = split_generated(x, cfg)
    inside = np.zeros((12, 12, 12), bool)
    inside[3:9, 3:9, 3:9] = True
    assert images.shape == (4, 12, 12, 12) and images.dtype == np.float32
    assert np.array_equal(images[:, inside], x[:4, inside])  # the brain kept as generated, the hole too
    assert (images[:, ~inside] == -1.0).all()  # haze and speck cut to the background
    assert regions.shape == (3, 12, 12, 12) and regions[0, 4, 4, 4] == 1.0 and regions[0, 0, 0, 0] == -1.0
    # without the channel nothing is cut
    plain = load_config(None, ["data.label_mode=regions", "conditioning.generate_labels=true"])
    images, regions = split_generated(x[:7], plain)
    assert np.array_equal(images, x[:4]) and np.array_equal(regions, x[4:7])
    # a mask with no brain anywhere: left as generated (an all-background case is no image), with a warning
    empty = x.copy()
    empty[7] = -1.0
    with caplog.at_level("WARNING"):
        images, regions = split_generated(empty, cfg)
    assert np.array_equal(images, x[:4]) and np.array_equal(regions, x[4:7]) and "brain mask is empty" in caplog.text


def test_generate_brain_is_refused_where_it_has_no_meaning():
    with pytest.raises(ValueError, match="generate_brain is for unconditional models"):
        load_config(None, ["data.label_mode=regions", "conditioning.mask=true", "conditioning.generate_brain=true"])
    with pytest.raises(ValueError, match="generate_brain is for the diffusion stage"):
        load_config(None, ["stage=sr", "conditioning.generate_brain=true"])


def test_the_codec_check_encodes_the_brain_channel_as_training_does():
    cfg = _cfg("latent.fit_stats=false")
    codec = build_codec_for(cfg)
    images = torch.rand(2, 4, *SHAPE) * 2 - 1
    images[:, :, :4] = -1.0
    labels = (torch.rand(2, 3, *SHAPE) > 0.5).to(torch.uint8)
    rec = codec_reconstruction(codec, images, labels, list(cfg.data.modalities), case_ids=["a", "b"])
    assert rec["per_modality"]["t1n"]["ssim_min"] > 0.999  # the wavelet codec is exact: the channels lined up
    with pytest.raises(ValueError, match="no labels"):
        codec_reconstruction(codec, images, None, list(cfg.data.modalities), case_ids=["a", "b"])


def test_a_brain_generating_model_trains_exports_and_writes_cases_empty_outside_the_brain(tmp_path, monkeypatch):
    write_phantom_dataset(tmp_path / "data", 2, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp_path / "data", num_folds=2), tmp_path / "m.json")
    cfg = _cfg("name=brain", f"output_dir={tmp_path / 'runs'}", f"data.manifest={tmp_path / 'm.json'}",
               f"data.root={tmp_path / 'data'}", "data.fold=null", f"data.roi={list(SHAPE)}", "data.cache=memory",
               "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8", "objective.type=flow",
               "sampler.name=euler", "sampler.num_steps=2", "train.max_steps=2", "train.micro_batch=1",
               "train.precision=fp32", "train.device=cpu", "train.log_every=1", "train.warmup_steps=1",
               "train.preview_every=2")
    codec = build_codec_for(cfg)
    assert codec.config.modalities[-1] == "brain" and resolve_net_config(cfg, codec).in_channels == 8 * 8
    assert train_diffusion(cfg, progress=False).final_step == 2
    assert list((run_dir_of(cfg) / "previews").glob("step_*.png"))  # the preview cuts the same way
    model = export_run(run_dir_of(cfg), tmp_path / "model")
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(model), "--num", "1", "--out", str(out), "--no-progress"]) == 0
    images = np.stack([nib.load(out / "case_0000" / f"{m}.nii.gz").get_fdata() for m in cfg.data.modalities])
    seg = nib.load(out / "case_0000" / "seg.nii.gz").get_fdata()
    empty = (images == 0).all(0)
    # an untrained model's brain channel is noise: its largest component leaves some of the grid outside, which
    # is exactly empty, where the same case uncut is hardly ever empty in all four modalities
    raw = {}

    def spy(x, c):
        raw["x"] = x.copy()
        return split_generated(x, c)

    monkeypatch.setattr(generation, "split_generated", spy)
    case = generation.DiffusionPipeline.from_pretrained(model)([0])[0]
    uncut = (raw["x"][:4] <= -1).all(0)
    assert uncut.mean() < 0.01 and 0.02 < empty.mean() < 1.0, (uncut.mean(), empty.mean())
    assert np.array_equal((case.images <= -1).all(0), empty)  # the file is the pipeline's cut case
    assert (seg[empty] == 0).all()
