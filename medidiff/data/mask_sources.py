"""Where a synthetic case's conditioning mask came from, and the rule that keeps test labels out.

The leak this module closes (issue 14): ``medidiff generate --masks MANIFEST`` used to take masks
from every labelled case in manifest order, so half of a recorded synthetic set was drawn from the
held-out test fold's label maps; segmenters trained on that set then saw test labels, and nothing
downstream could tell. Two halves, one contract:

* :func:`select_mask_cases` (``generate``): masks come only from the folds the model TRAINED on
  (every fold except the model's ``data.fold``; all folds for a model trained with
  ``data.fold: null``), or from folds named explicitly. Defaulting needs proof that the mask
  manifest IS the model's training manifest (same sha256); otherwise the folds must be named.
* :func:`check_synthetic_provenance` (``evaluate``): reads each case's ``provenance.json`` and
  refuses a case whose mask is a case of the evaluation's held-out fold, and a model whose
  training manifest or held-out fold differs from the evaluation's (its "held-out" real cases
  would then be training cases of the generator).

Provenance keys written by ``generate`` and read by ``evaluate``::

    "mask":          {"case_id_sha256": "<16 hex>", "manifest_sha256": "<16 hex>", "fold": 1}
                     # medidiff.io.source_record: no plain id unless --keep-source-ids
    "training_data": {"manifest_sha256": "<16 hex> | null", "fold": 0 | null}
                     # the model's held-out fold; null = trained on every case

Manifest hashes are compared on their first 16 hex digits (what ``source_record`` keeps). Sets
written before these records carry ``"mask": "MANIFEST#CASE_ID"``; the case id is looked up in
the evaluation manifest, so an old leaky set is refused too. Masks from a folder of label maps
(``"mask": "DIR/CASE_ID.nii.gz"``, as ``write_model_grid_masks`` names them, or a
``{"file_sha256", "file_stem_sha256"}`` record) are looked up by file name; the rest are counted
as unverified in the summary. A mask whose case is in the evaluation's manifest is judged by that
case's fold there, whichever manifest file it was taken from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medidiff.data.config import DataConfig
from medidiff.data.manifest import load_manifest
from medidiff.errors import DataError, MedidiffError
from medidiff.files import file_sha256

__all__ = [
    "TRAINING_DATA_KEY",
    "file_sha256",
    "training_data_record",
    "select_mask_cases",
    "check_synthetic_provenance",
]

TRAINING_DATA_KEY = "training_data"
SHA_DIGITS = 16  # manifest hashes are compared on this prefix (medidiff.io.source_record keeps 16)


def _sha_or_none(path: str | Path | None) -> str | None:
    if not path:
        return None
    p = Path(path).expanduser()
    return file_sha256(p) if p.is_file() else None


def training_data_record(data: DataConfig | Mapping[str, Any]) -> dict[str, Any]:
    """What the model trained on, for provenance: its manifest's sha256 (16 hex digits, as
    :func:`medidiff.io.source_record`; null when the file is not readable here; no path, which may
    name a site) and its held-out fold (null: trained on every labelled case).

    ``export`` records it in the model folder (``config.json: training_data``) while the training
    manifest is at hand; ``generate`` copies that record, so a later edit, move or rebuild of the
    manifest file cannot change what the model is said to have trained on.
    """
    manifest, fold = (data.get("manifest"), data.get("fold")) if isinstance(data, Mapping) else (data.manifest, data.fold)
    sha = _sha_or_none(manifest)
    return {"manifest_sha256": sha[:SHA_DIGITS] if sha else None, "fold": fold}


def select_mask_cases(
    manifest: str | Path,
    root: str | Path | None,
    data: DataConfig,
    folds: Sequence[int] | None = None,
    *,
    trained_on: Mapping[str, Any] | None = None,
    flags: tuple[str, str] = ("--masks", "--mask-folds"),
    refuse_held_out: bool = False,
) -> list[dict[str, Any]]:
    """Labelled cases of ``manifest`` whose masks a model with data section ``data`` may use.

    ``folds=None``: the folds the model trained on, which needs ``manifest`` to be the model's own
    training manifest (same sha256 as ``trained_on``'s, the model folder's record, or else as the
    file at ``data.manifest`` now). Explicit ``folds``: exactly those, except that with
    ``refuse_held_out`` (real cases that a segmenter trains on, ``export-dataset``) a ``data.fold``
    among them is refused: the caller passes the fold the model held out of THIS manifest (None
    when unknown). ``flags`` name the manifest and folds options in messages.
    Returns the items in manifest order; raises MedidiffError naming the flag.
    """
    flag, folds_flag = flags
    sha = file_sha256(manifest) if Path(manifest).is_file() else None
    items = [it for it in load_manifest(manifest, root) if it.get("label")]  # DataError if unreadable
    if not items:
        raise MedidiffError(f"{flag} {manifest}: no labelled cases")
    bad = [it.get("case_id", "?") for it in items if isinstance(it.get("fold"), bool) or not isinstance(it.get("fold"), int)]
    if bad:
        raise DataError(manifest, f"case {bad[0]} has no integer 'fold': masks are chosen by fold, so use a manifest "
                                  "written by `medidiff manifest build`")
    present = sorted({int(it["fold"]) for it in items})
    if folds is None:
        recorded = (trained_on or {}).get("manifest_sha256")
        model_sha = recorded or _sha_or_none(data.manifest)
        if model_sha is None or sha is None or model_sha[:SHA_DIGITS] != sha[:SHA_DIGITS]:
            why = ("is not readable here" if model_sha is None else "differs from it")
            raise MedidiffError(
                f"{flag} {manifest}: cannot tell which of its folds the model trained on (the model's data.manifest "
                f"{data.manifest or '<unset>'} {why}); name them with {folds_flag} (folds present: {present})")
        chosen = [f for f in present if f != data.fold]
    else:
        chosen = sorted({int(f) for f in folds})
        missing = [f for f in chosen if f not in present]
        if missing:
            raise MedidiffError(f"{folds_flag} {missing}: not in {manifest} (folds present: {present})")
        if refuse_held_out and data.fold is not None and data.fold in chosen:
            raise MedidiffError(f"{folds_flag} {chosen}: fold {data.fold} is the fold the model held out of {manifest}: "
                                f"keep it for testing (training folds: {[f for f in present if f != data.fold]})")
    picked = [it for it in items if int(it["fold"]) in chosen]
    if not picked:
        raise MedidiffError(f"{flag} {manifest}: no labelled case in folds {chosen} (the model holds out fold "
                            f"{data.fold}; folds present: {present})")
    return picked


def check_synthetic_provenance(
    provenances: Sequence[Mapping[str, Any]],
    case_dirs: Sequence[str | Path],
    *,
    manifest_sha256: str,
    fold: int | None,
    case_folds: Mapping[str, int | None],
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Refuse a synthetic set that could have seen the evaluation's held-out real cases.

    Two rules. A model that trained on another manifest or fold than the evaluation holds out is
    refused whenever there is a held-out fold (``fold`` set): every comparison with held-out real
    cases would then compare with its training data. A conditioning mask from the held-out fold is
    refused when segmenters train on the synthetic set (``utility`` in ``tasks``; every task when
    ``tasks`` is None): they would see test labels. Fidelity, realism, memorisation and tissue
    checks train nothing on synthetic labels, so a held-out mask does not leak into them.

    ``provenances[i]`` is case ``case_dirs[i]``'s ``provenance.json`` ({} when absent);
    ``manifest_sha256``/``fold`` are the evaluation's real manifest and held-out fold;
    ``case_folds`` maps the evaluation manifest's case ids to their folds (for old-style
    ``"mask": "MANIFEST#CASE"`` records). Raises DataError naming the case's provenance file;
    returns a summary for the report (what was checked, what could not be).
    """
    # the evaluation holds the manifest, so a hashed case id (medidiff.io.source_record) can be named
    by_hash = {hashlib.sha256(cid.encode()).hexdigest()[:SHA_DIGITS]: cid for cid in case_folds}
    mask_folds: dict[str, int] = {}
    external = unverified_model = unverified_masks = generated_masks = unrecorded_generators = 0
    models: set[tuple[Any, Any]] = set()

    def check_trained_on(td: Mapping[str, Any], where: Path, model: str) -> tuple[Any, Any]:
        """The rule for one model's training-data record: ``model`` names it in the message."""
        m_sha, m_fold = td.get("manifest_sha256"), td.get("fold")
        if fold is not None and m_sha is not None and str(m_sha)[:SHA_DIGITS] != manifest_sha256[:SHA_DIGITS]:
            raise DataError(where, f"{model} trained on another manifest (sha256 {str(m_sha)[:12]}...), not the "
                                   f"evaluation's (sha256 {manifest_sha256[:12]}...): its held-out cases are not "
                                   "held out from this model; evaluate with the model's own manifest")
        if fold is not None and m_fold != fold:
            fix = (f"evaluate with --set data.fold={m_fold}" if m_fold is not None
                   else "evaluation needs a model trained with data.fold set")
            what = "trained on every fold" if m_fold is None else f"held out fold {m_fold}"
            raise DataError(where, f"{model} {what}, the evaluation holds out fold {fold}: the model saw the "
                                   f"evaluation's test cases; {fix}")
        return m_sha, m_fold

    for prov, case in zip(provenances, case_dirs):
        where = Path(case) / "provenance.json"
        td = prov.get(TRAINING_DATA_KEY)
        if isinstance(td, Mapping):
            m_sha, m_fold = check_trained_on(td, where, "the model")
            unverified_model += m_sha is None
            models.add((m_sha, m_fold))
        else:
            unverified_model += 1
        src = prov.get("mask")
        if isinstance(src, Mapping) and "generated_case" in src:
            # a label map another model generated (the two-stage recipe: `generate --masks` on a generate folder):
            # that model's training data answers to the same rule, since its labels could copy a test case's
            if isinstance(src.get(TRAINING_DATA_KEY), Mapping):
                check_trained_on(src[TRAINING_DATA_KEY], where, "the model that generated its conditioning mask")
                generated_masks += 1
            else:  # an older generate recorded no training data
                unrecorded_generators += 1
            continue
        if isinstance(src, Mapping):
            # medidiff.io.source_record ({case_id_sha256, manifest_sha256, fold}) or a label-map
            # file ({file_sha256, file_stem_sha256}: write_model_grid_masks names files by case id).
            # A case of the evaluation's manifest is judged by ITS fold there, whatever manifest
            # file the mask was taken from (a byte-different copy must not hide a test case).
            digest = src.get("case_id_sha256") or src.get("file_stem_sha256")
            stem = re.sub(r"\.nii(\.gz)?$", "", Path(str(src["file"])).name) if src.get("file") else None
            cid = next((c for c in (src.get("case_id"), by_hash.get(digest), stem) if c in case_folds), None)
            if cid is not None:
                src_fold, same = case_folds[cid], True
            elif "manifest_sha256" in src:
                cid = str(src.get("case_id") or f"case sha256 {digest}")
                src_fold = src.get("fold")
                same = str(src["manifest_sha256"])[:SHA_DIGITS] == manifest_sha256[:SHA_DIGITS]
            else:  # a label-map file whose name is no case of this manifest
                unverified_masks += 1
                continue
        elif isinstance(src, str) and "#" in src:
            cid = src.rsplit("#", 1)[1]  # written before the source records existed
            src_fold, same = case_folds.get(cid), cid in case_folds
        elif isinstance(src, str) and src:
            # a folder of label maps: `write_model_grid_masks` names each file after its case
            cid = re.sub(r"\.nii(\.gz)?$", "", Path(src).name)
            if cid not in case_folds:
                unverified_masks += 1
                continue
            src_fold, same = case_folds[cid], True
        else:
            continue
        if not same:
            external += 1
            continue
        if fold is not None and src_fold == fold and (tasks is None or "utility" in tasks):
            raise DataError(where, f"its conditioning mask is {cid}, a case of the evaluation's held-out fold {fold}: "
                                   "segmenters trained on this set would see test labels; regenerate with masks from "
                                   "the training folds (`medidiff generate --masks MANIFEST`, the default)")
        mask_folds[str(src_fold)] = mask_folds.get(str(src_fold), 0) + 1
    return {
        "cases": len(provenances),
        "mask_cases_by_fold": mask_folds,
        "masks_from_other_manifests": external,
        "mask_files_not_matched_to_a_case": unverified_masks,
        "masks_generated_by_a_checked_model": generated_masks,
        "masks_generated_by_a_model_without_training_record": unrecorded_generators,
        "cases_without_verified_training_manifest": unverified_model,
        "model_records": [{"manifest_sha256": s, "fold": f} for s, f in sorted(models, key=str)],
        "rule": "refused: a model trained on another manifest or fold than the held-out one (the model that "
                "generated a conditioning mask too); a mask from the held-out fold when segmenters train on the "
                "synthetic set (utility)",
    }
