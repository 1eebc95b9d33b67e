"""WaveletCodec: protocol, normalisation, streaming statistics, save/load, non-Haar path."""

from __future__ import annotations

import json
import math

import pytest
import torch

from medidiff.config import ConfigError, from_dict
from medidiff.latents import (
    CODECS,
    LatentCodec,
    WaveletCodec,
    WaveletCodecConfig,
    build_codec,
    codec_config_from_dict,
    load_codec,
)
from medidiff.latents.haar import haar_dwt3
from medidiff.latents.wavelet import periodized_dwt3, periodized_idwt3

MODS2 = ["t1n", "t2f"]


def _codec(levels: int = 1, **kw) -> WaveletCodec:
    return WaveletCodec(WaveletCodecConfig(in_channels=2, modalities=MODS2, levels=levels, **kw))


def test_protocol_and_registry() -> None:
    codec = _codec()
    assert isinstance(codec, LatentCodec)
    assert CODECS["wavelet"] is WaveletCodec
    assert codec.downsampling_factor == (2, 2, 2)
    assert codec.latent_channels == 16 and codec.in_channels == 2
    assert codec.latent_shape((2, 32, 16, 24)) == (16, 16, 8, 12)
    assert codec.latent_shape((32, 16, 24)) == (16, 16, 8, 12)
    assert codec.image_shape((16, 16, 8, 12)) == (2, 32, 16, 24)
    assert _codec(levels=2).latent_shape((16, 16, 16)) == (128, 4, 4, 4)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_encode_decode_exact(levels: int) -> None:
    codec = _codec(levels)
    x = torch.rand(2, 2, 16, 16, 16) * 2 - 1
    z = codec.encode(x)
    assert tuple(z.shape[1:]) == codec.latent_shape(tuple(x.shape[1:]))
    assert (codec.decode(z) - x).abs().max().item() < 1e-5


@pytest.mark.parametrize("levels", [1, 2])
def test_default_scaling_maps_lll_to_unit_range(levels: int) -> None:
    codec = _codec(levels)
    ones = torch.ones(1, 2, 16, 16, 16)
    z = codec.encode(ones)
    # LLL of a constant 1 image is 1 after the sqrt(8)^L division (not 8/3 as with WDM's /3)
    assert torch.allclose(z[:, :2], torch.ones_like(z[:, :2]), atol=1e-6)
    assert z[:, 2:].abs().max().item() < 1e-6
    assert codec.encode(-ones)[:, :2].min().item() == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("levels", [1, 2])
def test_zero_background_encodes_the_background_to_zero_everywhere(tmp_path, levels: int) -> None:
    """latent.zero_background: a -1 background is 0 in every latent channel, the coarse band is the block
    mean + 1, the detail bands are the default's, decoding is still exact, and a saved codec keeps it."""
    codec = _codec(levels).zero_background()
    plain = _codec(levels)
    x = -torch.ones(2, 2, 16, 16, 16)
    x[:, :, 4:12, 4:12, 4:12] = torch.rand(2, 2, 8, 8, 8) * 2 - 1  # a "brain" inside a -1 background
    z, z0 = codec.encode(x), plain.encode(x)
    block = 2**levels
    outside = z[..., : 4 // block, :, :]  # blocks entirely in the background
    assert outside.abs().max().item() < 1e-6
    assert torch.allclose(z[:, :2], z0[:, :2] + 1, atol=1e-5) and torch.equal(z[:, 2:], z0[:, 2:])
    assert (codec.decode(z) - x).abs().max().item() < 1e-5
    assert codec.config.stats_count == 0  # nothing fitted
    loaded = load_codec(codec.save_pretrained(tmp_path / "codec"))
    assert torch.equal(loaded.encode(x), z)


def test_zero_background_is_refused_where_the_scaling_is_not_the_default() -> None:
    from medidiff.latents.config import LatentStageConfig

    for bad in ({"fit_stats": True}, {"type": "pretrained", "path": "codec", "fit_stats": False}):
        with pytest.raises(ValueError, match="zero_background"):
            LatentStageConfig(zero_background=True, **bad)
    assert LatentStageConfig(zero_background=True, fit_stats=False).zero_background


def test_an_experiment_with_zero_background_trains_on_the_shifted_codec() -> None:
    """The training (and SR) stage builds its codec with the shift; the config refuses it, in one line, with
    fitted statistics."""
    from pathlib import Path

    from medidiff.config import load_config
    from medidiff.training.diffusion import build_codec_for

    recipe = Path(__file__).resolve().parents[2] / "configs" / "anatomy_2mm.yaml"
    codec = build_codec_for(load_config(recipe, ["latent.zero_background=true"]))
    assert codec.config.mean[:7] == [-math.sqrt(8)] * 7 and codec.config.mean[7:] == [0.0] * (len(codec.config.mean) - 7)
    assert build_codec_for(load_config(recipe)).config.mean is None  # the shipped recipe: unchanged
    with pytest.raises(ConfigError, match="zero_background") as exc:
        load_config(recipe, ["latent.zero_background=true", "latent.fit_stats=true"])
    assert len(str(exc.value).splitlines()) == 1


def test_fit_stats_known_moments_and_batching_invariance() -> None:
    codec = _codec()
    g = torch.Generator().manual_seed(1)
    # known per-band moments: build latents with mean mu_k and std sd_k, invert to images
    n_ch = codec.latent_channels
    mu = torch.linspace(-0.5, 0.5, n_ch, dtype=torch.float64)
    sd = torch.linspace(0.2, 2.0, n_ch, dtype=torch.float64)
    z = torch.randn(6, n_ch, 8, 8, 8, generator=g, dtype=torch.float64)
    z = (z - z.mean(dim=(0, 2, 3, 4), keepdim=True)) / z.std(dim=(0, 2, 3, 4), keepdim=True, unbiased=False)
    z = z * sd.view(1, -1, 1, 1, 1) + mu.view(1, -1, 1, 1, 1)  # exact moments over the data
    images = codec.idwt(z)  # (6, 2, 16, 16, 16)
    codec.fit_stats([images[:1], images[1:4], images[4:]])  # uneven batches: Chan merge
    assert torch.allclose(torch.tensor(codec.config.mean, dtype=torch.float64), mu, atol=1e-10)
    assert torch.allclose(torch.tensor(codec.config.std, dtype=torch.float64), sd, atol=1e-10)
    assert codec.config.stats_count == 6 * 8**3
    one_batch = _codec().fit_stats([{"image": images}])  # MONAI-style dict batches too
    assert one_batch.config.mean == pytest.approx(codec.config.mean, abs=1e-12)
    assert one_batch.config.std == pytest.approx(codec.config.std, abs=1e-12)
    # encoded data now has zero mean, unit variance per channel
    e = codec.encode(images.float()).double()
    assert e.mean(dim=(0, 2, 3, 4)).abs().max().item() < 1e-5
    assert (e.std(dim=(0, 2, 3, 4), unbiased=False) - 1).abs().max().item() < 1e-5
    assert (codec.decode(codec.encode(images.float())) - images.float()).abs().max().item() < 1e-5


def test_save_load_round_trip(tmp_path) -> None:
    codec = _codec(levels=2)
    codec.fit_stats([torch.randn(2, 2, 16, 16, 16) for _ in range(2)])
    out = codec.save_pretrained(tmp_path / "codec")
    assert (out / "config.json").is_file() and not (out / "model.safetensors").exists()
    data = json.loads((out / "config.json").read_text())
    assert data["type"] == "wavelet" and len(data["std"]) == 128
    for loaded in (load_codec(out), WaveletCodec.from_pretrained(out)):
        assert isinstance(loaded, WaveletCodec)
        assert loaded.config == codec.config  # floats survive JSON bit-exactly
        x = torch.rand(1, 2, 16, 16, 16) * 2 - 1
        assert torch.equal(loaded.encode(x), codec.encode(x))


def test_config_validation_teaches(tmp_path) -> None:
    with pytest.raises(ConfigError, match="in_channels=2"):
        from_dict(WaveletCodecConfig, {"in_channels": 2, "modalities": ["t1n"]})
    with pytest.raises(ConfigError, match="both be set or both be null"):
        from_dict(WaveletCodecConfig, {"mean": [0.0] * 32})
    with pytest.raises(ConfigError, match=r"8\*\*1 \* 4 = 32"):
        from_dict(WaveletCodecConfig, {"mean": [0.0] * 8, "std": [1.0] * 8})
    with pytest.raises(ConfigError, match="std must be finite and > 0"):
        from_dict(WaveletCodecConfig, {"mean": [0.0] * 32, "std": [1.0] * 31 + [0.0]})
    with pytest.raises(ConfigError, match="biorthogonal"):
        from_dict(WaveletCodecConfig, {"wavelet": "bior2.2"})
    with pytest.raises(ConfigError, match="levels=1 only"):
        from_dict(WaveletCodecConfig, {"wavelet": "db2", "levels": 2})
    with pytest.raises(ConfigError, match="levels 0 pixel space"):  # it would transform one level anyway
        from_dict(WaveletCodecConfig, {"wavelet": "db2", "levels": 0})
    with pytest.raises(ConfigError, match="levels must be 0, 1, 2 or 3"):
        from_dict(WaveletCodecConfig, {"levels": 4})
    with pytest.raises(ConfigError, match="unknown codec type 'vea'"):
        codec_config_from_dict({"type": "vea"})
    with pytest.raises(ConfigError, match="needs a 'type'"):
        codec_config_from_dict({"levels": 1})
    cfg = codec_config_from_dict({"type": "wavelet", "levels": 2})
    assert isinstance(build_codec(cfg), WaveletCodec)
    with pytest.raises(ConfigError, match="config.json"):
        load_codec(tmp_path)


def test_shape_errors_teach() -> None:
    codec = _codec(levels=2)
    with pytest.raises(ValueError, match=r"pad to \(16, 240, 240\)"):
        codec.latent_shape((2, 15, 240, 240))
    with pytest.raises(ValueError, match="in_channels=2"):
        codec.latent_shape((4, 16, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 2, D, H, W\)"):
        codec.encode(torch.zeros(1, 4, 16, 16, 16))


def test_constant_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="constant"):
        _codec().fit_stats([torch.zeros(1, 2, 8, 8, 8)])


@pytest.mark.parametrize("wavelet", ["db2", "sym3"])
def test_non_haar_round_trip_and_orthonormal(wavelet: str) -> None:
    codec = _codec(wavelet=wavelet)
    x = torch.rand(2, 2, 16, 16, 24) * 2 - 1
    z = codec.dwt(x)
    assert z.shape == (2, 16, 8, 8, 12)
    assert (codec.decode(codec.encode(x)) - x).abs().max().item() < 1e-5
    assert z.double().pow(2).sum().item() == pytest.approx(x.double().pow(2).sum().item(), rel=1e-5)


def test_periodized_matches_pywt_and_haar() -> None:
    pywt = pytest.importorskip("pywt")
    x = torch.randn(1, 2, 8, 12, 16, dtype=torch.float64)
    z = periodized_dwt3(x, "db2").view(1, 8, 2, 4, 6, 8)
    ref = pywt.dwtn(x.numpy(), "db2", mode="periodization", axes=(-3, -2, -1))
    for s, key in enumerate(["aaa", "aad", "ada", "add", "daa", "dad", "dda", "ddd"]):
        assert torch.allclose(z[:, s], torch.from_numpy(ref[key]), atol=1e-12), key
    # Haar has no wrap-around: the dense path equals the fast one
    assert torch.allclose(periodized_dwt3(x, "haar"), haar_dwt3(x, 1), atol=1e-12)
    assert torch.allclose(periodized_idwt3(periodized_dwt3(x, "db2"), "db2"), x, atol=1e-12)


def test_white_noise_encodes_to_unit_variance_with_identity_stats() -> None:
    n_ch = 16
    codec = _codec(mean=[0.0] * n_ch, std=[1.0] * n_ch)  # explicit identity normalisation
    z = codec.encode(torch.randn(4, 2, 32, 32, 32))
    var = z.transpose(0, 1).reshape(n_ch, -1).var(dim=1)
    assert (var - 1).abs().max().item() < 6 * math.sqrt(2 / z[:, 0].numel()) + 0.02
