"""One entry for "where is the data": a manifest, a BraTS-layout folder, or phantoms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset

__all__ = ["prepare_data"]


def prepare_data(data: str | Path | None, out: str | Path, *, shape: Sequence[int], seed: int = 0,
                 cases: int = 8, num_folds: int = 4) -> tuple[str, str]:
    """(manifest path, data root) for an experiment's ``data.manifest`` / ``data.root``.

    ``data`` may be a manifest JSON (used as it is; root "" = its folder), a BraTS 2021/2023
    folder (a manifest with ``num_folds`` folds is written to ``out/manifest.json``), or None:
    ``cases`` phantom cases of ``shape`` are written to ``out/phantoms`` first.
    """
    out = Path(out)
    if data is not None and Path(data).is_file():
        return str(data), ""
    root = Path(data) if data is not None else out / "phantoms"
    if data is None:
        write_phantom_dataset(root, cases, shape=tuple(shape), seed=seed, progress=False)
    manifest = write_manifest(build_brats_manifest(root, num_folds=num_folds, seed=seed), out / "manifest.json")
    return str(manifest), str(root)
