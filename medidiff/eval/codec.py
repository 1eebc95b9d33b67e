"""Codec reconstruction: how much of a real case survives encode -> decode (issue 14, item 5).

A latent diffusion model can never be more faithful than its codec: whatever ``decode(encode(x))``
loses, no sampler puts back. The numbers are PSNR and SSIM per modality of the reconstruction of
each HELD-OUT real case (cases the codec, if trained, never saw), on the evaluation grid in the
[-1, 1] scale (data range 2):

* the wavelet codec is an orthonormal transform plus a per-band scale, so it is exact up to float
  rounding: PSNR is ``inf`` or very high and SSIM 1 (a known answer the tests check);
* a VAE codec loses detail; its numbers bound the texture a model on its latents can reproduce.

Codecs that also encode generated region masks (``conditioning.generate_labels``) get the case's
WT/TC/ET regions as extra channels, and those of ``conditioning.generate_brain`` its brain mask (as in
training); only the modalities are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medidiff.errors import DataError
from medidiff.eval.image_metrics import psnr, ssim

__all__ = ["load_eval_codec", "codec_reconstruction"]


def load_eval_codec(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """A codec folder, or a model folder holding one under ``codec/``."""
    from medidiff.latents import load_codec

    p = Path(path)
    folder = p / "codec" if (p / "codec" / "config.json").is_file() else p
    if not (folder / "config.json").is_file():
        raise DataError(p, "not a codec folder or a model folder with codec/ (no config.json)")
    return load_codec(folder).to(device)


@torch.no_grad()
def codec_reconstruction(
    codec: Any, images: torch.Tensor, labels: torch.Tensor | None, modalities: Sequence[str], *,
    case_ids: Sequence[str], batch_size: int = 1,
) -> dict[str, Any]:
    """PSNR (dB) and SSIM per modality of ``decode(encode(x))`` for (N, C, X, Y, Z) ``images``."""
    from medidiff.training.diffusion import BRAIN, brain_channel

    c = images.shape[1]
    # the generated channels after the modalities, by the codec's channel names (training's layout; every
    # codec config names one per input channel); a codec object without a config: modalities (+ WT/TC/ET)
    names = getattr(getattr(codec, "config", None), "modalities", None)
    extras = list(names[c:]) if names else {0: [], 3: ["WT", "TC", "ET"]}.get(int(codec.in_channels) - c)
    regions = [n for n in extras or [] if n != BRAIN]
    if extras is None or len(extras) != int(codec.in_channels) - c or set(extras) - {"WT", "TC", "ET", BRAIN} \
            or (regions and labels is None):
        raise ValueError(f"the codec takes {codec.in_channels} channels; these cases have {c} modalities"
                         + (" and no labels" if labels is None else ""))
    device = next(iter([*codec.parameters(), *codec.buffers()]), torch.empty(0)).device
    p_all, s_all = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].float()
        parts = [x, *([labels[start:start + batch_size].float() * 2 - 1] if regions else []),  # type: ignore[index]
                 *([brain_channel(x)] if BRAIN in extras else [])]
        full = torch.cat(parts, 1)
        y = codec.decode(codec.encode(full.to(device))).float().cpu().clamp(-1, 1)[:, :c]
        p_all.append(torch.stack([psnr(y[:, k], x[:, k]) for k in range(c)], 1))  # (B, C)
        s_all.append(torch.stack([ssim(y[:, k:k + 1], x[:, k:k + 1]) for k in range(c)], 1))
    p = torch.cat(p_all).double().numpy()
    s = torch.cat(s_all).double().numpy()
    per_mod = {}
    for k, m in enumerate(modalities):
        finite = p[:, k][np.isfinite(p[:, k])]
        per_mod[m] = {"psnr_mean": float(finite.mean()) if finite.size == p.shape[0] else float("inf"),
                      "psnr_min": float(p[:, k].min()), "ssim_mean": float(s[:, k].mean()), "ssim_min": float(s[:, k].min())}
    return {"cases": int(p.shape[0]), "per_modality": per_mod,
            "per_case": {"case_ids": list(case_ids), "psnr": p.tolist(), "ssim": s.tolist()}}
