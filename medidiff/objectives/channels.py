"""Settings given per image channel (a modality or a generated mask: t1n, WT, brain), spread over the
latent channels that carry it: a wavelet latent names each channel by sub-band and image ("LLH:t1n")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medidiff.errors import MedidiffError

__all__ = ["per_image_channel", "split_channel_names"]


def split_channel_names(channel_names: Sequence[str] | None, key: str) -> tuple[list[str], list[str]]:
    """(sub-bands, image channels) of every latent channel; ``key`` names the setting that needs them."""
    parts = [name.partition(":") for name in channel_names or []]
    if not parts or not all(sep and band and image for band, sep, image in parts):
        raise MedidiffError(f"objective.{key} is set per sub-band or image channel, but this model's channels are not "
                            f"named by sub-band ({list(channel_names or [])[:3]}...): use a wavelet latent or unset it")
    return [b for b, _, _ in parts], [i for _, _, i in parts]


def per_image_channel(values: Mapping[str, float], default: float, channel_names: Sequence[str] | None,
                      key: str) -> list[float]:
    """One value per latent channel: its image channel's entry in ``values``, else ``default``. A name the
    model does not have is refused (a misspelt one would silently leave that channel at the default)."""
    _, images = split_channel_names(channel_names, key)
    unknown = sorted(set(values) - set(images))
    if unknown:
        raise MedidiffError(f"objective.{key} names {unknown}, which this model does not have: its image "
                            f"channels are {list(dict.fromkeys(images))}")
    return [float(values.get(image, default)) for image in images]
