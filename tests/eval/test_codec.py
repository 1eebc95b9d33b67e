"""Codec reconstruction PSNR/SSIM: exact for the wavelet codec, finite and ordered for a lossy one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medidiff.eval.codec import codec_reconstruction, load_eval_codec
from medidiff.latents.wavelet import WaveletCodec, WaveletCodecConfig

MODS = ["t1n", "t1c", "t2w", "t2f"]


class _Pooling(nn.Module):
    """A lossy stand-in codec: 2x average pooling, nearest upsampling."""

    in_channels = 4

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(x, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z, scale_factor=2, mode="nearest")


def _cases(n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    smooth = F.avg_pool3d(torch.randn(n, 4, 20, 20, 20, generator=g), 5, stride=1)  # (n, 4, 16, 16, 16)
    return (smooth / smooth.abs().max()).clamp(-1, 1)


def test_wavelet_codec_is_exact_and_a_lossy_codec_is_not(tmp_path):
    x = _cases()
    WaveletCodec(WaveletCodecConfig()).save_pretrained(tmp_path / "m" / "codec")
    exact = codec_reconstruction(load_eval_codec(tmp_path / "m"), x, None, MODS, case_ids=["a", "b"])
    for v in exact["per_modality"].values():
        assert v["psnr_min"] > 80 and v["ssim_min"] == pytest.approx(1.0, abs=1e-5)
    lossy = codec_reconstruction(_Pooling(), x, None, MODS, case_ids=["a", "b"])
    for m, v in lossy["per_modality"].items():
        assert 5 < v["psnr_mean"] < 60 and v["ssim_mean"] < 0.999
    assert len(lossy["per_case"]["psnr"]) == 2 and len(lossy["per_case"]["psnr"][0]) == 4


def test_codec_channel_mismatch_and_missing_folder_are_clear(tmp_path):
    from medidiff.errors import DataError

    class Seven(_Pooling):
        in_channels = 7  # images + WT/TC/ET: needs labels

    with pytest.raises(ValueError, match="7 channels.*no labels"):
        codec_reconstruction(Seven(), _cases(), None, MODS, case_ids=["a", "b"])
    with pytest.raises(DataError, match="not a codec folder"):
        load_eval_codec(tmp_path)
