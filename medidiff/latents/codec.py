"""The ``LatentCodec`` protocol and the save/load helpers every codec shares.

A codec maps images x (B, C, D, H, W) in [-1, 1] to *normalised* latents z (B, C', D', H', W')
that the denoiser sees, and back. Normalisation (per-channel shift/scale, latent scaling factor)
is part of the codec and of its config, so training and sampling code never multiplies by
constants of its own.

On disk a codec is a folder::

    config.json          to_dict(config), with "type" naming the codec in CODECS
    model.safetensors    weights, only for codecs that have them (the VAE); none for wavelets

``medidiff.latents.load_codec(dir)`` reads ``type`` and dispatches through the plain-dict
registry ``medidiff.latents.CODECS``; each codec also has ``from_pretrained(dir)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from medidiff.config import ConfigError, from_dict, to_dict

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "LatentCodec",
    "save_config",
    "read_config_dict",
    "load_config_as",
    "save_weights",
    "load_weights",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

C = TypeVar("C")


@runtime_checkable
class LatentCodec(Protocol):
    """What the diffusion side needs from a codec (wavelet: exact; VAE: trained)."""

    config: Any  # a dataclass with a ``type`` field and the normalisation statistics
    in_channels: int  # C of the image
    latent_channels: int  # C' of the latent
    downsampling_factor: tuple[int, int, int]  # per spatial axis (D, H, W)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, D, H, W) in [-1, 1] -> normalised z (B, C', D', H', W')."""
        ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised z (B, C', D', H', W') -> x (B, C, D, H, W)."""
        ...

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(C, D, H, W) or spatial (D, H, W) -> (C', D', H', W'); errors say how to pad."""
        ...

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (+ model.safetensors if there are weights); return the folder."""
        ...

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> LatentCodec:
        """Rebuild the codec that :meth:`save_pretrained` wrote into ``directory``."""
        ...


# --------------------------------------------------------------------------------------------
# Helpers shared by codecs
# --------------------------------------------------------------------------------------------


def save_config(directory: str | Path, config: Any) -> Path:
    """Write ``to_dict(config)`` as ``directory/config.json`` (creating the folder)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = to_dict(config)
    if not data.get("type"):
        raise ValueError(f"{type(config).__name__} has no 'type': load_codec could not dispatch it")
    path = directory / CONFIG_NAME
    # floats round-trip exactly through json (repr), so fitted statistics load bit-identical
    path.write_text(json.dumps(data, indent=2) + "\n")
    return directory


def read_config_dict(directory: str | Path) -> dict[str, Any]:
    """Read ``directory/config.json`` as a dict and check it names a codec ``type``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: not found; a codec folder holds {CONFIG_NAME} (see save_pretrained)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ConfigError(f"{path}: expected a JSON object with a string 'type' (e.g. \"wavelet\")")
    return data


def load_config_as(cls: type[C], directory: str | Path) -> C:
    """Read and validate ``config.json`` as dataclass ``cls`` (strict: unknown keys are errors)."""
    path = Path(directory) / CONFIG_NAME
    return from_dict(cls, read_config_dict(directory), source=str(path))


def save_weights(directory: str | Path, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write ``model.safetensors`` (tensors made contiguous and moved to CPU)."""
    from safetensors.torch import save_file

    from medidiff.files import atomic_path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS_NAME
    with atomic_path(path) as tmp:  # the umask's mode (safetensors creates 0600), never half-written
        save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp))
    return path


def load_weights(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` from ``directory``."""
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise ConfigError(f"{path}: not found; this codec type stores its weights there")
    return load_file(str(path), device=str(device))
