"""One entry for "where is the data": a manifest, a BraTS-layout folder, or a synthetic set."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset

__all__ = ["SYNTHETIC_SETS", "prepare_data", "synthetic_spacing", "write_synthetic_set"]

SYNTHETIC_SETS = ("anatomy", "phantom")


def synthetic_spacing(kind: str, shape: Sequence[int]) -> tuple[float, float, float]:
    """Voxel size (mm) of a ``kind`` set written at ``shape``: the spacing to read it at.

    The phantom is drawn at 1 mm whatever the grid (its head scales with it); the anatomy set puts
    a real-size brain into the BraTS field of view, so its spacing is 240/X, 240/Y, 155/Z mm.
    """
    if kind == "phantom":
        return (1.0, 1.0, 1.0)
    if kind == "anatomy":
        from medidiff.data.anatomy import AnatomySpec

        return tuple(round(float(v), 4) for v in AnatomySpec(shape=tuple(shape)).voxel_mm)  # type: ignore[return-value]
    raise ValueError(f"synthetic data set must be one of {SYNTHETIC_SETS}, got {kind!r}")


def write_synthetic_set(
    kind: str,
    out: str | Path,
    cases: int,
    *,
    shape: Sequence[int],
    seed: int = 0,
    tumour_fraction: float = 0.8,
    progress: bool = False,
    workers: int = 1,
) -> None:
    """Write ``cases`` cases of the ``anatomy`` or ``phantom`` set (read them at
    :func:`synthetic_spacing`), in ``workers`` processes (the same volumes for any count)."""
    shape = tuple(int(v) for v in shape)
    synthetic_spacing(kind, shape)  # validates kind and shape before anything is written
    if kind == "phantom":
        write_phantom_dataset(out, cases, shape=shape, seed=seed, tumour_fraction=tumour_fraction, progress=progress,
                              workers=workers)
    else:
        from medidiff.data.anatomy import AnatomySpec, write_anatomy_dataset

        spec = AnatomySpec(shape=shape, tumour_fraction=tumour_fraction)
        write_anatomy_dataset(out, cases, seed=seed, spec=spec, progress=progress, workers=workers)


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
