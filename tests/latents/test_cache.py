"""Latent cache: `medidiff latents encode` round trip, staleness checks, `medidiff latents stats`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from medidiff.cli import latents_cmd
from medidiff.config import load_config
from medidiff.data.dataset import collate_cases, make_dataset
from medidiff.data.manifest import build_brats_manifest, label_map_of, load_manifest, read_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.errors import MedidiffError
from medidiff.latents import VAECodec, VAECodecConfig, load_codec
from medidiff.latents.cache import LatentCacheDataset, cache_pipeline_hash, codec_hash, read_cache_manifest
from medidiff.latents.config import VAEArchitecture


def _cli(argv: list[str]) -> int:
    """Run `medidiff latents ...` through its own parser (main.py's COMMANDS is the lead's to edit)."""
    parser = argparse.ArgumentParser(prog="medidiff")
    latents_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cache")
    write_phantom_dataset(tmp / "data", 3, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=3), tmp / "m.json")
    torch.manual_seed(0)
    codec = VAECodec(VAECodecConfig(architecture=VAEArchitecture(latent_channels=3, channels=[8, 8, 8])))
    codec.save_pretrained(tmp / "vae")
    (tmp / "e.yaml").write_text(
        f"data:\n  manifest: {tmp / 'm.json'}\n  root: {tmp / 'data'}\n  roi: [16, 16, 8]\n  cache: none\n"
        f"  label_mode: regions\n  fold: null\n"
    )
    return {"tmp": tmp, "vae": tmp / "vae", "yaml": tmp / "e.yaml", "manifest": tmp / "m.json"}


def _encode(setup: dict[str, Path], out: Path, *extra: str) -> Path:
    assert _cli(["latents", "encode", "--codec", str(setup["vae"]), "--manifest", str(setup["manifest"]),
                 "--root", str(setup["tmp"] / "data"), "--out", str(out), "--config", str(setup["yaml"]),
                 "--shard-size", "2", *extra]) == 0
    return out


def test_cache_round_trip_equals_direct_encode(setup) -> None:
    out = _encode(setup, setup["tmp"] / "lat")
    info = read_cache_manifest(out)
    assert info["num_cases"] == 3 and info["mode"] == "mean" and info["codec_hash"] == codec_hash(setup["vae"])
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_00000.safetensors", "shard_00001.safetensors"]
    cfg = load_config(setup["yaml"])
    codec = load_codec(setup["vae"])
    assert info["pipeline_hash"] == cache_pipeline_hash(cfg.data, codec)
    ds = LatentCacheDataset(out, setup["vae"], pipeline_hash=cache_pipeline_hash(cfg.data, codec))
    # direct: the same deterministic pipeline, then codec.encode
    items = load_manifest(setup["manifest"], str(setup["tmp"] / "data"))
    direct = make_dataset(items, cfg.data, divisor=4, train=False, label_map=label_map_of(read_manifest(setup["manifest"])))
    assert len(ds) == len(direct) == 3
    for i in range(3):
        batch = collate_cases([direct[i]])
        item = ds[i]
        assert item["case_id"] == batch["case_id"][0]
        with torch.no_grad():
            torch.testing.assert_close(item["latent"], codec.encode(batch["image"])[0], atol=1e-6, rtol=0)
        assert torch.equal(item["label"], batch["label"][0]) and item["latent"].shape == (3, 4, 4, 2)


def test_sample_mode_is_seeded_and_differs_from_mean(setup) -> None:
    a = LatentCacheDataset(_encode(setup, setup["tmp"] / "s1", "--mode", "sample", "--seed", "5"), setup["vae"])
    b = LatentCacheDataset(_encode(setup, setup["tmp"] / "s2", "--mode", "sample", "--seed", "5"), setup["vae"])
    m = LatentCacheDataset(_encode(setup, setup["tmp"] / "m", "--mode", "mean"), setup["vae"])
    assert torch.equal(a[0]["latent"], b[0]["latent"]) and not torch.equal(a[0]["latent"], m[0]["latent"])
    assert a.manifest["mode"] == "sample"


def test_cache_refused_after_codec_refit_and_pipeline_change(setup, tmp_path: Path) -> None:
    import shutil

    codec_dir = tmp_path / "vae"
    shutil.copytree(setup["vae"], codec_dir)
    setup = {**setup, "vae": codec_dir}
    out = _encode(setup, tmp_path / "lat")
    old = codec_hash(codec_dir)
    # `latents stats` refits the statistics in place: the codec's hash changes, the cache is stale
    assert _cli(["latents", "stats", "--codec", str(codec_dir), "--config", str(setup["yaml"])]) == 0
    refit = load_codec(codec_dir)
    assert refit.config.mean is not None and refit.config.stats_count > 0
    new = codec_hash(codec_dir)
    assert new != old
    with pytest.raises(MedidiffError, match=f"codec hash {old} but .* has hash {new}"):
        LatentCacheDataset(out, codec_dir)
    # re-encoding fixes it; a changed data section (roi) is refused by its pipeline hash
    out = _encode(setup, tmp_path / "lat")
    cfg = load_config(setup["yaml"], ["data.roi=[16,16,16]"])
    ph = cache_pipeline_hash(cfg.data, refit)
    cached = read_cache_manifest(out)["pipeline_hash"]
    with pytest.raises(MedidiffError, match=f"pipeline hash {cached} but .* pipeline hash is {ph}"):
        LatentCacheDataset(out, codec_dir, pipeline_hash=ph)


def test_stats_for_a_wavelet_codec(setup, tmp_path: Path) -> None:
    from medidiff.latents import WaveletCodec, WaveletCodecConfig

    WaveletCodec(WaveletCodecConfig()).save_pretrained(tmp_path / "wav")
    assert _cli(["latents", "stats", "--codec", str(tmp_path / "wav"), "--config", str(setup["yaml"]),
                 "--out", str(tmp_path / "wav2")]) == 0
    data = json.loads((tmp_path / "wav2" / "config.json").read_text())
    assert len(data["mean"]) == len(data["std"]) == 32 and data["stats_count"] > 0
    assert json.loads((tmp_path / "wav" / "config.json").read_text())["mean"] is None  # --out: source untouched


def test_encode_errors_are_clear(setup, tmp_path: Path) -> None:
    with pytest.raises(MedidiffError, match="not found; --codec must be a codec folder"):
        codec_hash(tmp_path)
    with pytest.raises(MedidiffError, match="latents encode"):
        LatentCacheDataset(tmp_path, setup["vae"])


def test_diffusion_trains_from_the_cache_without_running_the_codec(setup, tmp_path: Path, monkeypatch) -> None:
    from medidiff.training.diffusion import train_diffusion

    out = _encode(setup, tmp_path / "lat")
    cfg = load_config(setup["yaml"], [
        "name=cached", f"output_dir={tmp_path / 'runs'}", "latent.type=pretrained", f"latent.path={setup['vae']}",
        f"latent.cache={out}", "conditioning.mask=true", "net.channels=[8, 16]", "net.num_res_blocks=1",
        "net.norm_groups=8", "objective.type=flow", "sampler.name=euler", "train.max_steps=2", "train.micro_batch=1",
        "train.precision=fp32", "train.device=cpu", "train.warmup_steps=1", "train.log_every=1",
    ])

    def no_encode(self, *args, **kwargs):
        raise AssertionError("the codec ran during training from a latent cache")

    monkeypatch.setattr(VAECodec, "encode", no_encode)
    result = train_diffusion(cfg, progress=False)
    assert result.final_step == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    # a cache of another data section is refused
    other = load_config(setup["yaml"], ["data.roi=[32, 32, 24]", "latent.type=pretrained",
                                        f"latent.path={setup['vae']}", f"latent.cache={out}", "net.channels=[8, 16]",
                                        "net.norm_groups=8", "train.device=cpu", f"output_dir={tmp_path / 'r2'}"])
    with pytest.raises(MedidiffError, match="stale latent cache"):
        train_diffusion(other, progress=False)
