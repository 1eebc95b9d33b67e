"""Pretrained models shipped inside the package: no download, usable by a short name.

``medidiff generate --model anatomy-2mm`` finds the model folder here (a path that exists is always
taken as a path first). Each folder is an ordinary model folder (``config.json``, ``codec/``,
``model.safetensors`` with bf16 EMA weights, loaded into the fp32 net) plus ``card.json``: how it was
trained, on what, and what it scored (benchmarks/pack_pretrained.py writes it).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRETRAINED", "PRETRAINED_DEMO", "pretrained_folder", "model_path"]

_HERE = Path(__file__).resolve().parent

# short name -> folder under medidiff/pretrained/
PRETRAINED: dict[str, str] = {
    # wavelet flow (x0 target, raw detail bands), images + WT/TC/ET together, 2 mm anatomy, 80x96x80, trained
    # on the outside-the-tumour intensity scale since 2026-12-07 (written files: the normal brain in [0, 0.5])
    "anatomy-2mm": "anatomy_2mm",
}
PRETRAINED_DEMO = "anatomy-2mm"  # what `medidiff demo` generates from in its last step


def pretrained_folder(name: str) -> Path:
    """The model folder of a shipped model (KeyError names the known ones)."""
    if name not in PRETRAINED:
        raise KeyError(f"no pretrained model {name!r}; shipped: {', '.join(PRETRAINED)}")
    return _HERE / PRETRAINED[name]


def model_path(value: str) -> str:
    """A ``--model`` argument: an existing path as given, else a shipped model's folder by its
    short name, else the value unchanged (the loader then names the missing folder)."""
    if value in PRETRAINED and not Path(value).exists():
        return str(pretrained_folder(value))
    return value
