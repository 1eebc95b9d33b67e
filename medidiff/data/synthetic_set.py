"""Writing a synthetic data set (phantom or anatomy) in the BraTS 2023 GLI layout.

``out/BraTS-GLI-%05d-000/BraTS-GLI-%05d-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (plus any extra
volumes a data set adds, such as the anatomy set's ``-tissue``), each with a provenance sidecar
from :func:`medidiff.io.write_nifti`, and ``out/<manifest_name>`` with the generator parameters and
a per-case summary. The manifest says ``complete: false`` until every case is written.

Re-running on a folder of the same kind overwrites it cleanly: case folders are rewritten and case
folders beyond ``cases`` are removed. A non-empty folder without that manifest is refused, so no
one's files are written over.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from medidiff.data.brats import LABELS, MODALITIES
from medidiff.errors import DataError, MedidiffError

__all__ = ["CASE_RE", "MAX_CASES", "case_id", "check_dataset_args", "write_case_dataset"]

MAX_CASES = 100_000  # case ids have five digits
CASE_RE = re.compile(r"BraTS-GLI-\d{5}-000")


class DatasetArgError(MedidiffError, ValueError):
    """Bad case count or seed."""


def case_id(index: int) -> str:
    """BraTS 2023 case id of case ``index``: ``BraTS-GLI-00007-000`` (timepoint 000)."""
    return f"BraTS-GLI-{index:05d}-000"


def check_dataset_args(cases: int, seed: int, workers: int = 1) -> None:
    """Raise unless 1 <= cases <= 100000, seed is a non-negative int and workers a positive int."""
    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or not 1 <= cases <= MAX_CASES:
        raise DatasetArgError(
            f"cases must be an integer in [1, {MAX_CASES}] (five-digit BraTS ids), got {cases!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetArgError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise DatasetArgError(f"workers must be an integer >= 1, got {workers!r}")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _prepare_out(out: Path, manifest_name: str, kind: str) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(out, f"exists and is not a folder; give a folder for {kind} data set")
    if out.is_dir() and any(out.iterdir()) and not (out / manifest_name).is_file():
        raise DataError(
            out,
            f"folder is not empty and holds no {manifest_name}, so it is not {kind} data set; "
            "refusing to write over other files: choose a new or empty folder",
        )
    out.mkdir(parents=True, exist_ok=True)


def write_case_dataset(
    out: str | Path,
    cases: int,
    seed: int,
    make_case: Callable[[int], Any],
    *,
    kind: str,
    manifest_name: str,
    manifest: Mapping[str, Any],
    provenance: Mapping[str, Any],
    extra_volumes: Mapping[str, str] | None = None,
    progress: bool = True,
    workers: int = 1,
) -> list[Path]:
    """Write ``cases`` cases made by ``make_case(index)``; return the case folders.

    ``make_case`` returns a record with ``images`` (modality -> array), ``seg``, ``affine`` and
    ``metadata`` (``has_tumour`` and ``tumour``); ``extra_volumes`` maps a file suffix to an
    attribute of that record holding another uint8 volume (e.g. ``{"tissue": "tissue"}``).
    ``manifest`` and ``provenance`` are data-set facts for the manifest and every file's sidecar.

    ``workers`` > 1 makes and writes cases in that many spawned processes (``make_case`` must then
    be picklable: a module-level function or a ``functools.partial`` of one). Case i depends only
    on (seed, i), so the files hold the same volumes whatever the worker count; the manifest lists
    the cases in index order and says ``complete: true`` only after every worker has finished.
    """
    from tqdm import tqdm

    check_dataset_args(cases, seed, workers)
    out = Path(out)
    _prepare_out(out, manifest_name, kind)
    ids = [case_id(i) for i in range(cases)]
    keep = set(ids)
    for old in sorted(out.iterdir()):
        if old.is_dir() and CASE_RE.fullmatch(old.name) and old.name not in keep:
            shutil.rmtree(old)  # stale case of an earlier, larger run (the manifest was checked)
    record: dict[str, Any] = {
        **manifest,
        "synthetic": True,
        "complete": False,  # set True once every case is written
        "seed": int(seed),
        "cases": int(cases),
        "case_seed": "numpy.random.SeedSequence([seed, case_index])",
        "layout": "BraTS 2023 GLI: <id>/<id>-{%s}.nii.gz" % ",".join([*MODALITIES, "seg", *(extra_volumes or {})]),
        "modalities": list(MODALITIES),
        "labels": {str(k): v for k, v in LABELS.items()},
        "case_list": [],
    }
    _write_json(out / manifest_name, record)
    job = partial(_write_case, make_case, out=out, seed=int(seed), provenance=provenance,
                  extra_volumes=dict(extra_volumes or {}))
    bar = tqdm(total=cases, desc=kind.split()[-1], unit="case", disable=not progress)
    # spawn, not fork: the caller may hold torch/OpenMP threads, which a forked child can deadlock on
    pool = (ProcessPoolExecutor(min(workers, cases), mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else nullcontext())
    entries = []
    with pool:
        for entry in (pool.map(job, range(cases)) if workers > 1 else map(job, range(cases))):  # index order
            entries.append(entry)
            bar.update()
    bar.close()
    record["case_list"] = entries
    folders = [out / e["id"] for e in entries]
    record["complete"] = True
    _write_json(out / manifest_name, record)
    return folders


def _write_case(make_case: Callable[[int], Any], index: int, *, out: Path, seed: int, provenance: Mapping[str, Any],
                extra_volumes: Mapping[str, str]) -> dict[str, Any]:
    """Make case ``index`` and write its volumes; return its manifest entry (a worker's whole job)."""
    from medidiff.io import write_nifti

    cid = case_id(index)
    case = make_case(index)
    folder = out / cid
    if folder.exists():
        shutil.rmtree(folder)  # no stale files from an earlier run survive
    prov = {
        **provenance,
        "seed": seed,
        "case_index": index,
        "case_id": cid,
        "has_tumour": case.metadata["has_tumour"],
        "tumour": case.metadata["tumour"],
    }
    for m in MODALITIES:
        write_nifti(folder / f"{cid}-{m}.nii.gz", case.images[m], case.affine, provenance={**prov, "modality": m})
    volumes = {"seg": case.seg, **{s: getattr(case, a) for s, a in extra_volumes.items()}}
    for suffix, vol in volumes.items():
        write_nifti(folder / f"{cid}-{suffix}.nii.gz", vol, case.affine, provenance={**prov, "modality": suffix},
                    dtype=np.uint8)
    tum = case.metadata["tumour"]
    return {
        "id": cid,
        "index": index,
        "has_tumour": case.metadata["has_tumour"],
        "hemisphere": tum["hemisphere"] if tum else None,
        "lobe": tum["lobe"] if tum else None,
        "volume_ml": tum["volume_ml"] if tum else None,
    }
