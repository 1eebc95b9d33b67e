"""Manifest validation: every planted problem is reported, with its file, in one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medidiff.cli.main import main
from medidiff.data.brats import BRATS_AFFINE
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.validate import Problem, check_case, validate_manifest
from tests.data.mock_brats import (
    brats2023_case_id,
    make_brats2021,
    make_brats2023,
    mock_label,
    mock_volume,
    save_nifti,
)

SHAPE = (12, 12, 8)


def _build(root: Path, manifest: Path, **kw) -> Path:
    return write_manifest(build_brats_manifest(root, **kw), manifest)


def _file(root: Path, i: int, suffix: str) -> Path:
    cid = brats2023_case_id(i)
    return root / cid / f"{cid}-{suffix}.nii.gz"


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def test_clean_manifest_has_no_problems(tmp_path, capsys):
    root = make_brats2023(tmp_path / "d", 3)
    make_brats2023(root, 1, with_labels=False, start=9)
    out = _build(root, tmp_path / "m.json")
    assert validate_manifest(out, root=root) == []
    assert main(["manifest", "validate", str(out), "--root", str(root), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_brats2021_raw_labels_valid_through_label_map(tmp_path, capsys):
    root = make_brats2021(tmp_path / "d", 2)
    out = _build(root, root / "m.json")
    assert validate_manifest(out) == []  # root defaults to the manifest's folder; raw 4 -> 3
    # without 3 in the allowed set, the mapped enhancing tumour is outside it
    probs = validate_manifest(out, labels=[0, 1, 2])
    assert len(probs) == 2 and all("[4]" in p.message and p.path.endswith("_seg.nii.gz") for p in probs)
    assert main(["manifest", "validate", str(out), "--labels", "0,1,2", "--no-progress"]) == 1


def test_every_planted_problem_reported_in_one_run(tmp_path, capsys):
    root = make_brats2023(tmp_path / "d", 14, shape=SHAPE)
    manifest_path = _build(root, tmp_path / "m.json")
    outside = save_nifti(tmp_path / "outside" / "x.nii.gz", mock_volume(SHAPE, 0))

    # 0: truncated .nii.gz
    t1c0 = _file(root, 0, "t1c")
    t1c0.write_bytes(t1c0.read_bytes()[: t1c0.stat().st_size // 2])
    # 1: 4D file where 3D is expected
    save_nifti(_file(root, 1, "t2w"), np.zeros((*SHAPE, 2), np.int16))
    # 2: shape differs from the case's other files
    save_nifti(_file(root, 2, "t1c"), mock_volume((12, 12, 9), 2))
    # 3: affine differs (shifted 5 mm)
    shifted = BRATS_AFFINE.copy()
    shifted[0, 3] += 5.0
    save_nifti(_file(root, 3, "t2f"), mock_volume(SHAPE, 3), shifted)
    # 4: modality file deleted
    _file(root, 4, "t2w").unlink()
    # 5: NaN voxel
    vol = mock_volume(SHAPE, 5).astype(np.float32)
    vol[3, 3, 3] = np.nan
    save_nifti(_file(root, 5, "t1n"), vol)
    # 6: label value 5
    lab = mock_label(SHAPE, 6)
    lab[0, 0, 0] = 5
    save_nifti(_file(root, 6, "seg"), lab)
    # 10: symlink that leaves the root
    link = _file(root, 10, "t2f")
    link.unlink()
    link.symlink_to(outside)
    # 11: non-integer label values (linear resampling)
    save_nifti(_file(root, 11, "seg"), mock_label(SHAPE, 11).astype(np.float32) * 0.5)

    data = json.loads(manifest_path.read_text())
    items = data["training"]
    # 7: path escaping the root via ../
    items[7]["image"][0] = items[7]["t1n"] = "../outside/x.nii.gz"
    # 8: missing modality entry (image list and per-modality key)
    del items[8]["image"][1], items[8]["t1c"]
    # 9: duplicate case
    items.append(json.loads(json.dumps(items[9])))
    manifest_path.write_text(json.dumps(data))

    problems = validate_manifest(manifest_path, root=root)

    def reported(i: int, path: Path | str, *words: str) -> None:
        cid = brats2023_case_id(i)
        hits = [p for p in problems if p.case_id == cid and p.path == str(path)
                and all(w.lower() in p.message.lower() for w in words)]
        assert hits, f"case {i}: no problem naming {path} with {words}; got:\n" + "\n".join(map(str, problems))

    reported(0, t1c0, "unreadable", "EOFError")
    reported(1, _file(root, 1, "t2w"), "not 3D", "(12, 12, 8, 2)")
    reported(2, _file(root, 2, "t1c"), "shape (12, 12, 9)")
    reported(3, _file(root, 3, "t2f"), "affine")
    reported(4, _file(root, 4, "t2w"), "missing file")
    reported(5, _file(root, 5, "t1n"), "NaN")
    reported(6, _file(root, 6, "seg"), "[5]")
    reported(7, root.parent / "outside" / "x.nii.gz", "escapes the data root", "..")
    reported(8, manifest_path, "missing modality", "3 path")
    reported(8, manifest_path, "missing modality", "t1c")
    reported(9, manifest_path, "duplicate case_id")
    reported(9, _file(root, 9, "t1n"), "duplicate path")
    reported(10, _file(root, 10, "t2f"), "escapes the data root", "symlink")
    reported(11, _file(root, 11, "seg"), "non-integer")
    # the odd file is blamed, not its consistent neighbours; untouched cases are clean
    assert not [p for p in problems if p.case_id == brats2023_case_id(2) and "t1c" not in p.path]
    assert not [p for p in problems if p.case_id == brats2023_case_id(3) and "t2f" not in p.path]
    assert not [p for p in problems if p.case_id in {brats2023_case_id(12), brats2023_case_id(13)}]
    assert all(p.severity == "error" for p in problems)

    capsys.readouterr()
    assert main(["manifest", "validate", str(manifest_path), "--root", str(root), "--no-progress"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(problems) + 1 and lines[-1].startswith("FAILED:")
    assert any(str(t1c0) in line for line in lines)


def test_malformed_manifests(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"training": [}')
    probs = validate_manifest(bad)
    assert len(probs) == 1 and probs[0].path == str(bad) and "not valid JSON" in probs[0].message
    assert main(["manifest", "validate", str(bad), "--no-progress"]) == 1
    assert str(bad) in capsys.readouterr().out

    root = make_brats2023(tmp_path / "d", 2)
    data = build_brats_manifest(root)
    del data["medidiff"]
    data["test"] = []
    data["training"][0]["fold"] = 9
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(data))
    messages = [p.message for p in validate_manifest(plain, root=root)]
    assert any("'medidiff' block" in m for m in messages)
    assert any("'test' is an empty list" in m for m in messages)
    assert "not found" in validate_manifest(tmp_path / "missing.json")[0].message


def test_warnings_do_not_fail_unless_strict(tmp_path, capsys):
    root = make_brats2023(tmp_path / "d", 2)
    out = _build(root, root / "m.json")
    save_nifti(_file(root, 0, "seg"), mock_label(SHAPE, 0)[..., None])  # (X, Y, Z, 1) label
    probs = validate_manifest(out)
    assert {(p.path, p.severity) for p in probs} == {(str(_file(root, 0, "seg")), "warning")}
    assert main(["manifest", "validate", str(out), "--no-progress"]) == 0
    assert "1 warning(s)" in capsys.readouterr().out
    assert main(["manifest", "validate", str(out), "--no-progress", "--strict"]) == 1
    # the same singleton axis on one of several modalities breaks MONAI's stacking: an error
    save_nifti(_file(root, 0, "t1n"), mock_volume(SHAPE, 0)[..., None])
    probs = validate_manifest(out)
    assert [p.severity for p in probs if p.path == str(_file(root, 0, "t1n"))] == ["error"]


def test_default_root_hint_when_nothing_is_found(tmp_path):
    root = make_brats2023(tmp_path / "d", 2)
    out = _build(root, tmp_path / "data_manifests" / "m.json")
    probs = validate_manifest(out)  # root defaults to data_manifests/, where no data lives
    assert probs[0].case_id is None and f"--root {root.absolute()}" in probs[0].message
    assert len(_errors(probs)) == 1 + 2 * 5


def test_check_case_api(tmp_path):
    root = make_brats2023(tmp_path / "d", 1)
    item = build_brats_manifest(root)["training"][0]
    kw = dict(modalities=["t1n", "t1c", "t2w", "t2f"], labels=[0, 1, 2, 3], num_folds=5)
    assert check_case(item, root, **kw) == []
    item = dict(item, has_label=False)
    assert any("has_label false" in p.message for p in check_case(item, root, **kw))
    assert check_case([1, 2], root, **kw)[0].case_id is None


def test_absolute_paths_rejected(tmp_path):
    root = make_brats2023(tmp_path / "d", 1)
    item = build_brats_manifest(root)["training"][0]
    item["label"] = str((root / item["label"]).absolute())
    probs = check_case(item, root, modalities=["t1n", "t1c", "t2w", "t2f"])
    assert [p.message.split(" ")[0] for p in probs] == ["absolute"]


def test_gzip_trailer_cut_is_caught(tmp_path):
    # nibabel reads only the voxel bytes; a file missing just its CRC/size trailer loads through
    # nibabel alone, so validate reads the gzip stream to its end
    root = make_brats2023(tmp_path / "d", 1)
    out = _build(root, root / "m.json")
    seg = _file(root, 0, "seg")
    seg.write_bytes(seg.read_bytes()[:-8])
    probs = validate_manifest(out)
    assert [(p.path, "unreadable" in p.message) for p in probs] == [(str(seg), True)]
