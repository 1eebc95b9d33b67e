"""SR stage and cascade end to end on tiny phantoms: train -> export -> from_pretrained -> generate.

Full grid 32^3, SR patches 16^3, scale 2 (base model on 16^3), 1-level Haar latents.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medidiff.cascade.pipeline import CascadePipeline, SRPipeline, sr_seed
from medidiff.cascade.sr_task import SRLoss, check_sr_config, degrade, export_sr, resolve_sr_net_config, train_sr
from medidiff.config import ConfigError, load_config
from medidiff.data.labels import block_majority_regions
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.data.transforms import BlockDownsampled, LabelToChannelsd
from medidiff.errors import MedidiffError
from medidiff.generation import DiffusionPipeline, export_run
from medidiff.nets import build_net
from medidiff.objectives import build_objective
from medidiff.training import checkpoint as ckpt
from medidiff.training.diffusion import build_codec_for, run_dir_of, train_diffusion
from medidiff.training.stages import STAGES

ROI = (32, 32, 32)


def _overrides(tmp: Path) -> list[str]:
    return [
        f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}", "data.fold=null",
        f"data.roi={list(ROI)}", "data.cache=memory", "data.label_mode=regions", "conditioning.generate_labels=true",
        "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8", "objective.type=flow",
        "sampler.name=euler", "sampler.num_steps=2", "train.max_steps=2", "train.micro_batch=2",
        "train.precision=fp32", "train.device=cpu", "train.ckpt_every=1", "train.log_every=1", "train.warmup_steps=1",
    ]


def _sr_cfg(tmp: Path, *extra: str):
    return load_config(None, ["name=sr", "stage=sr", "cascade.patch_size=[16, 16, 16]", "cascade.scale=2",
                              *_overrides(tmp), *extra])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("cascade")
    write_phantom_dataset(tmp / "data", 2, shape=(36, 36, 34), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    cfg = _sr_cfg(tmp)
    result = train_sr(cfg, progress=False)
    # the base samples with 3 steps, the SR stage with 2: generate must use each model's own
    base_cfg = load_config(None, ["name=base", "data.downsample=2", *_overrides(tmp), "sampler.num_steps=3"])
    train_diffusion(base_cfg, progress=False)
    return {"tmp": tmp, "cfg": cfg, "result": result, "run": run_dir_of(cfg),
            "sr": export_sr(run_dir_of(cfg), tmp / "sr_model"), "base": export_run(run_dir_of(base_cfg), tmp / "base_model")}


def test_sr_stage_trains_through_fit_and_is_registered(models):
    assert models["result"].final_step == 2
    rows = [json.loads(line) for line in (models["run"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and "loss/band/HHH" in rows[-1]
    assert STAGES["sr"]() == (train_sr, export_sr)


def test_sr_stage_with_its_cases_held_on_the_device_gives_the_loaders_losses(models):
    # train.data_on_device: whole cases held once, windows cut there from the items' seeded draws
    cfg = _sr_cfg(models["tmp"], "name=sr_held", "train.data_on_device=true")
    train_sr(cfg, progress=False)
    rows = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (models["run"], run_dir_of(cfg))]
    assert [r["step"] for r in rows[1]] == [1, 2]
    for loaded, held in zip(*rows):
        assert loaded["loss"] == held["loss"] and loaded["loss/band/HHH"] == held["loss/band/HHH"]


def test_sr_loss_depends_only_on_the_step_generator(models):
    """Patches, augmentation and noise come from the loop's generator: exact resume repeats them."""
    cfg = models["cfg"]
    codec = build_codec_for(cfg)
    net = build_net(dataclasses.replace(resolve_sr_net_config(cfg, codec), zero_init=False))
    loss_fn = SRLoss(cfg, codec, build_objective(cfg.objective))
    batch = {"image": torch.rand(2, 4, *ROI) * 2 - 1, "label": (torch.rand(2, 3, *ROI) > 0.8).float()}
    run = lambda seed: loss_fn(net, batch, torch.Generator().manual_seed(seed))[0].item()
    assert run(5) == run(5) and run(5) != run(6)


def test_mask_conditioned_sr_concatenates_the_full_resolution_masks(models):
    cfg = _sr_cfg(models["tmp"], "conditioning.generate_labels=false", "conditioning.mask=true")
    codec = build_codec_for(cfg)
    net_cfg = resolve_sr_net_config(cfg, codec)
    assert net_cfg.in_channels == 32 and net_cfg.cond_channels == 32 + 24 and net_cfg.num_scalars == 1
    loss_fn = SRLoss(cfg, codec, build_objective(cfg.objective))
    batch = {"image": torch.rand(2, 4, *ROI) * 2 - 1, "label": (torch.rand(2, 3, *ROI) > 0.8).float()}
    loss, logs = loss_fn(build_net(net_cfg), batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and "band/LLL" in logs


def _meeting_labels(seed: int) -> torch.Tensor:
    """(2, 8, 8, 8) label maps {0..3} with ~15% of 2^3 blocks holding three or more labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (2, 8, 8, 8), generator=g)


def _regions(labels: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) labels -> (B, 3, X, Y, Z) WT/TC/ET in {0, 1}, as the data pipeline makes them (uint8)
    and ``model_input`` hands them on (float)."""
    return torch.stack([LabelToChannelsd(mode="regions")({"label": lab[None]})["label"] for lab in labels]).float()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_degrade_uses_the_base_stage_label_rule(seed):
    """The SR stage learns from low-res masks; the base stage is trained on (and generates) the data
    pipeline's block-downsampled labels. Both must give the same masks: the SR stage's output is
    tested against the base stage's, on label maps where three labels meet in many blocks."""
    labels = _meeting_labels(seed)
    images = torch.rand(2, 4, 8, 8, 8) * 2 - 1
    x = torch.cat([images, _regions(labels) * 2 - 1], dim=1)  # what SRLoss degrades: (B, 4 + 3, *S)
    low = degrade(x, 2, num_images=4)
    assert low.shape == (2, 7, 4, 4, 4)
    torch.testing.assert_close(low[:, :4], torch.nn.functional.avg_pool3d(images, 2))  # area means
    base = torch.stack([BlockDownsampled((), ("label",), factor=2)({"label": lab[None].float()})["label"][0]
                        for lab in labels])  # the base stage's data pipeline: (B, 4, 4, 4) labels
    torch.testing.assert_close(low[:, 4:], _regions(base.long()) * 2 - 1.0)
    # the cascade's masks for its base model follow the same rule
    assert torch.equal(block_majority_regions(_regions(labels), 2), _regions(base.long()).bool())
    # the per-region majority that degrade used before disagrees on many blocks of such maps
    per_region = torch.nn.functional.avg_pool3d(_regions(labels), 2) >= 0.5
    assert (per_region != _regions(base.long()).bool()).any(dim=1).float().mean() > 0.05


def test_export_round_trip_holds_the_ema_weights(models):
    meta = json.loads((models["sr"] / "config.json").read_text())
    assert meta["kind"] == "medidiff.sr" and (models["sr"] / "codec" / "config.json").is_file()
    pipe = SRPipeline.from_pretrained(models["sr"])
    ema = ckpt.load_tensors(ckpt.latest_complete(ckpt.checkpoint_root(models["run"])) / "ema.safetensors")
    state = pipe.net.state_dict()
    for k, v in ema.items():
        assert torch.equal(state[k].float(), v), k
    assert pipe.net_cfg.cond_channels == pipe.net_cfg.in_channels == 56 and pipe.net_cfg.num_scalars == 1
    with pytest.raises(MedidiffError, match="not 'medidiff.sr'"):
        SRPipeline.from_pretrained(models["base"])


def test_sr_pipeline_same_seed_same_volume_alone_or_in_a_batch(models):
    pipe = SRPipeline.from_pretrained(models["sr"])
    low = torch.rand(2, *pipe.low_res_shape) * 2 - 1
    both = pipe(low, [3, 4])
    alone = pipe(low[1:], [4])
    assert both.shape == (2, 7, *ROI) and both.abs().max() <= 1
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=0)


def test_starting_noise_drawn_ahead_gives_the_same_volume(models):
    """The cascade draws the SR stage's starting noise while the base samples (on a GPU): it must be
    the noise the SR stage drew inline before (augmentation, then the full-grid latent, from each
    seed's CPU generator), and a StartNoise serves its own seeds once."""
    from medidiff.samplers import generators_from_seeds
    from medidiff.utils.tensor import randn_per_sample

    pipe = SRPipeline.from_pretrained(models["sr"])
    start = pipe.starting_noise([5, 6])
    gens = generators_from_seeds([5, 6])  # the draws __call__ made inline until 2026-11-30
    assert torch.equal(start.augmentation, randn_per_sample((2, *pipe.low_res_shape), gens))
    c, *hr = pipe.high_res_shape
    assert torch.equal(start.latent, randn_per_sample((2, *pipe.codec.latent_shape((c, *hr))), gens))
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(start.generators, gens))
    low = torch.rand(2, *pipe.low_res_shape) * 2 - 1
    with pytest.raises(ValueError, match=r"drawn for seeds \[5, 7\], given seeds \[5, 6\]"):
        pipe(low, [5, 6], start=pipe.starting_noise([5, 7]))
    pipe(low, [5, 6], start=start)
    with pytest.raises(ValueError, match="used already"):
        pipe(low, [5, 6], start=start)


def test_cascade_drawing_the_sr_noise_on_a_second_thread_gives_the_same_cases(models):
    pipe = CascadePipeline.from_pretrained(models["base"], models["sr"])
    net_cfg = dataclasses.replace(pipe.sr.net_cfg, zero_init=False)  # a non-zero net: the noise shows
    torch.manual_seed(3)
    pipe.sr = SRPipeline(pipe.sr.cfg, net_cfg, build_net(net_cfg), pipe.sr.codec)
    pipe.draw_ahead = False
    inline = pipe([0, 1])
    pipe.draw_ahead = True  # what a GPU does; here on the CPU, to test it
    ahead = pipe([0, 1])
    for a, b in zip(inline, ahead):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.label, b.label)


def test_patchwise_sr_matches_whole_volume_sr(models):
    """Same noise on the full grid: patch-wise sampling is close to whole-volume sampling (much closer
    than another seed), with a random (non-zero) net so the comparison is not trivial."""
    trained = SRPipeline.from_pretrained(models["sr"])
    net_cfg = dataclasses.replace(trained.net_cfg, zero_init=False)
    torch.manual_seed(1)
    pipe = SRPipeline(trained.cfg, net_cfg, build_net(net_cfg), trained.codec)
    low = torch.rand(1, *pipe.low_res_shape) * 2 - 1
    whole = pipe(low, [0], mode="whole")
    patches = pipe(low, [0], mode="patches", patch_size=(16, 16, 16), overlap=0.5)
    other = pipe(low, [1], mode="whole")
    inner = (slice(None), slice(None), *(slice(4, -4),) * 3)  # away from the volume border
    assert (patches - whole)[inner].abs().mean() < 0.25 * (other - whole)[inner].abs().mean()


def test_cascade_generates_full_resolution_cases_with_labels(models):
    pipe = CascadePipeline.from_pretrained(models["base"], models["sr"])
    cases = pipe([0, 1])
    again = pipe([1])
    assert len(cases) == 2 and cases[0].images.shape == (4, *ROI) and cases[0].label.shape == ROI
    assert np.abs(cases[0].images).max() <= 1 and set(np.unique(cases[0].label)) <= {0, 1, 2, 3}
    np.testing.assert_allclose(cases[1].images, again[0].images, atol=1e-5)
    prov = pipe.provenance(0, pipe.base.cfg.sampler)
    assert prov["generator"] == "medidiff.CascadePipeline" and prov["sr_seed"] == sr_seed(0) != 0
    assert prov["model_hash"] != prov["sr_model_hash"]


def test_bad_inputs_are_clear_errors(models):
    tmp = models["tmp"]
    with pytest.raises(ConfigError, match="not divisible by cascade.scale 3"):
        check_sr_config(_sr_cfg(tmp, "cascade.scale=3"))
    with pytest.raises(ConfigError, match=r"cascade.patch_size \[10, 16, 16\] not divisible by 4"):
        cfg = _sr_cfg(tmp, "cascade.patch_size=[10, 16, 16]")
        codec = build_codec_for(cfg)
        check_sr_config(cfg, codec, resolve_sr_net_config(cfg, codec))
    with pytest.raises(ConfigError, match="larger than data.roi"):
        check_sr_config(_sr_cfg(tmp, "cascade.patch_size=[64, 16, 16]"))
    with pytest.raises(ConfigError, match="data.downsample: 1"):
        check_sr_config(_sr_cfg(tmp, "data.downsample=2"))
    pipe = SRPipeline.from_pretrained(models["sr"])
    with pytest.raises(MedidiffError, match="low-res volumes have shape"):
        pipe(torch.zeros(1, 7, 8, 8, 8), [0])
    base = DiffusionPipeline.from_pretrained(models["base"])
    base.cfg = dataclasses.replace(base.cfg, data=dataclasses.replace(base.cfg.data, downsample=1))
    with pytest.raises(MedidiffError, match="x cascade.scale 2 != SR data.roi"):
        CascadePipeline(base, pipe)
    base = DiffusionPipeline.from_pretrained(models["base"])
    other = None if base.cfg.data.fold is not None else 0
    base.cfg = dataclasses.replace(base.cfg, data=dataclasses.replace(base.cfg.data, fold=other))
    with pytest.raises(MedidiffError, match="data.fold differs"):  # one held-out fold for the whole cascade
        CascadePipeline(base, pipe)


def test_generate_cli_cascades_to_the_full_grid(models, tmp_path):
    import nibabel as nib

    from medidiff.cli.main import main
    from medidiff.training.stages import export_stage_run

    out = tmp_path / "gen"
    assert main(["generate", "--model", str(models["base"]), "--sr-model", str(models["sr"]), "--num", "1",
                 "--out", str(out), "--no-progress"]) == 0
    img = nib.load(out / "case_0000" / "t1n.nii.gz")
    sr_cfg = SRPipeline.from_pretrained(models["sr"]).cfg
    assert img.shape == tuple(sr_cfg.data.roi)
    prov = json.loads((out / "case_0000" / "provenance.json").read_text())
    assert prov["seed"] == 0
    # each stage samples with its own configured steps (the base once got the SR model's)
    assert (prov["steps"], prov["sr_steps"]) == (3, 2)
    assert main(["generate", "--model", str(models["base"]), "--sr-model", str(models["sr"]), "--num", "1",
                 "--out", str(tmp_path / "gen2"), "--steps", "2", "--sr-steps", "1", "--no-progress"]) == 0
    prov = json.loads((tmp_path / "gen2" / "case_0000" / "provenance.json").read_text())
    assert (prov["steps"], prov["sr_steps"]) == (2, 1)
    # bad step counts are refused before any model is loaded
    for bad in (["--sr-steps", "0"], ["--steps", "-3"]):
        assert main(["generate", "--model", str(models["base"]), "--sr-model", str(models["sr"]), "--num", "1",
                     "--out", str(tmp_path / "gen3"), *bad]) == 2
    assert main(["generate", "--model", str(models["base"]), "--num", "1", "--out", str(tmp_path / "gen3"),
                 "--sr-steps", "2"]) == 2
    # `medidiff export` reads the stage from the checkpoint: an SR run exports as an SR model
    again = export_stage_run(models["run"], tmp_path / "sr_again")
    assert json.loads((again / "config.json").read_text())["kind"] == "medidiff.sr"
