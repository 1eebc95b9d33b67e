"""Latent codecs: images (B, C, D, H, W) in [-1, 1] <-> normalised latents for the denoiser.

``CODECS`` is the plain-dict registry, keyed by the ``type`` field of each codec's config; the VAE
codec adds ``"vae": VAECodec`` here. ``load_codec(dir)`` reads ``dir/config.json`` and dispatches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medidiff.config import ConfigError, from_dict
from medidiff.latents.codec import LatentCodec, read_config_dict
from medidiff.latents.config import CodecConfig, VAECodecConfig, WaveletCodecConfig
from medidiff.latents.haar import fast_dwt3, fast_idwt3, subband_names
from medidiff.latents.vae import VAECodec
from medidiff.latents.wavelet import WaveletCodec

__all__ = [
    "CODECS",
    "CodecConfig",
    "LatentCodec",
    "VAECodec",
    "VAECodecConfig",
    "WaveletCodec",
    "WaveletCodecConfig",
    "build_codec",
    "codec_config_from_dict",
    "fast_dwt3",
    "fast_idwt3",
    "load_codec",
    "subband_names",
]

# type -> codec class; each class has ``config_class`` and ``from_pretrained(dir)``.
CODECS: dict[str, Any] = {"wavelet": WaveletCodec, "vae": VAECodec}


def _codec_class(kind: Any, source: str) -> Any:
    if kind not in CODECS:
        raise ConfigError(f"{source}: unknown codec type {kind!r}; known: {sorted(CODECS)}")
    return CODECS[kind]


def codec_config_from_dict(data: dict[str, Any], *, source: str = "<config>") -> Any:
    """Validate a codec config mapping (e.g. a YAML ``latent:`` section) by its ``type``."""
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigError(f"{source}: a codec config needs a 'type' key, one of {sorted(CODECS)}")
    cls = _codec_class(data["type"], source)
    return from_dict(cls.config_class, data, source=source)


def build_codec(config: Any) -> LatentCodec:
    """A codec from its (validated) config dataclass."""
    return _codec_class(getattr(config, "type", None), type(config).__name__)(config)


def load_codec(directory: str | Path, **kwargs: Any) -> LatentCodec:
    """Load any saved codec: reads ``type`` from ``directory/config.json`` and calls its class's
    ``from_pretrained(directory, **kwargs)``."""
    data = read_config_dict(directory)
    cls = _codec_class(data["type"], str(Path(directory) / "config.json"))
    return cls.from_pretrained(directory, **kwargs)
