"""Manifest builders and readers: layouts, relative paths, folds, splits, MONAI compatibility."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from medidiff.cli.main import main
from medidiff.data.brats import MODALITIES
from medidiff.data.manifest import (
    assign_fold,
    build_brats_manifest,
    build_folder_manifest,
    load_manifest,
    write_manifest,
    split_folds,
)
from medidiff.errors import DataError
from tests.data.mock_brats import make_brats2021, make_brats2023, mock_label, mock_volume, save_nifti

SUFFIX_2021 = {"t1n": "_t1.nii.gz", "t1c": "_t1ce.nii.gz", "t2w": "_t2.nii.gz", "t2f": "_flair.nii.gz"}
SUFFIX_2023 = {m: f"-{m}.nii.gz" for m in MODALITIES}


def _all_items(manifest: dict) -> list[dict]:
    return manifest["training"] + manifest.get("test", [])


def _assert_relative_and_present(manifest: dict, root: Path) -> None:
    for item in _all_items(manifest):
        paths = item["image"] + ([item["label"]] if "label" in item else [])
        for p in paths:
            assert not os.path.isabs(p) and "\\" not in p and ".." not in p.split("/"), p
            assert (root / p).is_file(), p
        # per-modality keys name the same files as the image list, in the t1n,t1c,t2w,t2f order
        assert [item[m] for m in MODALITIES] == item["image"]


def test_brats2023_layout(tmp_path):
    root = make_brats2023(tmp_path / "d", 3, timepoints=2)
    m = build_brats_manifest(root, num_folds=3, seed=1)
    meta = m["medidiff"]
    assert set(meta) == {
        "format_version", "source_layout", "modalities", "label_convention", "labels", "label_map",
        "num_folds", "seed", "fold_rule", "created_by", "root_hint", "excluded",
    }
    assert meta["source_layout"] == "brats2023"
    assert meta["modalities"] == list(MODALITIES)
    assert meta["label_map"] == {} and meta["num_folds"] == 3 and meta["seed"] == 1
    assert meta["labels"] == {"0": "background", "1": "NCR/NETC", "2": "SNFH/ED", "3": "ET"}
    assert "test" not in m  # every case labelled: no (MONAI-crashing) empty test list
    assert len(m["training"]) == 6 and m["numTraining"] == 6
    _assert_relative_and_present(m, root)
    for item in m["training"]:
        cid = item["case_id"]
        assert item["image"] == [f"{cid}/{cid}{SUFFIX_2023[mod]}" for mod in MODALITIES]
        assert item["label"] == f"{cid}/{cid}-seg.nii.gz" and item["has_label"] is True
        assert item["subject_id"] == cid[:-4]
    # time points of one subject share a fold (no leak between train and validation)
    by_subject: dict[str, set[int]] = {}
    for item in m["training"]:
        by_subject.setdefault(item["subject_id"], set()).add(item["fold"])
    assert all(len(f) == 1 for f in by_subject.values())


def test_brats2021_layout_maps_names_and_labels(tmp_path):
    root = make_brats2021(tmp_path / "d", 3)
    m = build_brats_manifest(root)
    assert m["medidiff"]["source_layout"] == "brats2021"
    assert m["medidiff"]["label_map"] == {"4": 3}
    _assert_relative_and_present(m, root)
    for item in m["training"]:
        cid = item["case_id"]
        for mod in MODALITIES:
            assert item[mod] == f"{cid}/{cid}{SUFFIX_2021[mod]}"
        assert item["label"] == f"{cid}/{cid}_seg.nii.gz"
        assert "subject_id" not in item  # 2021 has no time points: subject = case


def test_other_2023_cohorts_and_nested_release_folder(tmp_path):
    root = tmp_path / "d"
    make_brats2023(root / "ASNR-MICCAI-BraTS2023-MEN-Challenge-TrainingData", 2, cohort="MEN")
    (root / "ASNR-MICCAI-BraTS2023-MEN-Challenge-TrainingData" / "._junk-t1n.nii.gz").write_bytes(b"x")
    m = build_brats_manifest(root)
    assert m["medidiff"]["source_layout"] == "brats2023"
    assert [i["case_id"] for i in m["training"]] == ["BraTS-MEN-00000-000", "BraTS-MEN-00001-000"]
    _assert_relative_and_present(m, root)


def test_readable_by_monai_with_base_dir(tmp_path):
    root = make_brats2023(tmp_path / "d", 3)
    make_brats2023(root, 2, with_labels=False, start=50)
    out = write_manifest(build_brats_manifest(root), tmp_path / "manifests" / "m.json")
    train = load_decathlon_datalist(out, is_segmentation=True, data_list_key="training", base_dir=root)
    test = load_decathlon_datalist(out, is_segmentation=True, data_list_key="test", base_dir=root)
    assert len(train) == 3 and len(test) == 2
    for item in train:
        assert len(item["image"]) == 4 and all(Path(p).is_absolute() and Path(p).is_file() for p in item["image"])
        assert Path(item["label"]).is_file()
    for item in test:
        assert "label" not in item and all(Path(p).is_file() for p in item["image"])


def test_unlabelled_cases_go_to_test(tmp_path):
    root = make_brats2023(tmp_path / "d", 2)
    make_brats2023(root, 3, with_labels=False, start=10)
    m = build_brats_manifest(root)
    assert {i["case_id"] for i in m["training"]} == {"BraTS-GLI-00000-000", "BraTS-GLI-00001-000"}
    assert len(m["test"]) == 3 and m["numTest"] == 3
    for item in m["test"]:
        assert item["has_label"] is False and "label" not in item and "fold" not in item
    assert all(i["has_label"] for i in m["training"])
    test = load_manifest(write_manifest(m, tmp_path / "m.json"), root=root, split="test")
    assert [Path(i["t2f"]).is_file() for i in test] == [True] * 3


def test_folds_stable_when_cases_are_added(tmp_path):
    root = make_brats2023(tmp_path / "d", 8)
    before = {i["case_id"]: i["fold"] for i in build_brats_manifest(root, num_folds=5, seed=3)["training"]}
    make_brats2023(root, 8, start=100)
    after = {i["case_id"]: i["fold"] for i in build_brats_manifest(root, num_folds=5, seed=3)["training"]}
    assert len(after) == 16
    assert {k: after[k] for k in before} == before
    # the seed matters: another seed reshuffles (some case moves)
    other = {i["case_id"]: i["fold"] for i in build_brats_manifest(root, num_folds=5, seed=4)["training"]}
    assert other != after


def test_fold_hash_is_balanced_and_in_range():
    counts = Counter(assign_fold(f"BraTS-GLI-{i:05d}", 5, seed=0) for i in range(1000))
    assert set(counts) == set(range(5))
    # multinomial: expected 200 per fold, sd ~12.6; 50 is ~4 sd
    assert all(150 <= c <= 250 for c in counts.values()), counts
    with pytest.raises(ValueError):
        assign_fold("x", 0)


def test_split_folds_partitions(tmp_path):
    root = make_brats2023(tmp_path / "d", 12)
    out = write_manifest(build_brats_manifest(root, num_folds=3), root / "m.json")
    items = load_manifest(out)  # default root = the manifest's folder (here: the data root)
    for fold in sorted({i["fold"] for i in items}):
        train, val = split_folds(items, fold)
        assert val and all(i["fold"] == fold for i in val)
        assert all(i["fold"] != fold for i in train)
        assert sorted(i["case_id"] for i in train + val) == sorted(i["case_id"] for i in items)
    with pytest.raises(ValueError, match="fold 7 has no cases"):
        split_folds(items, 7)


def test_load_manifest_absolute_paths_and_case_ids_kept(tmp_path):
    root = make_brats2021(tmp_path / "d", 2)
    out = write_manifest(build_brats_manifest(root), tmp_path / "elsewhere" / "m.json")
    items = load_manifest(out, root=root)
    for item in items:
        # MONAI would turn "BraTS2021_00000" into root/BraTS2021_00000 (the folder exists)
        assert item["case_id"].startswith("BraTS2021_") and "/" not in item["case_id"]
        for key in ("label", *MODALITIES):
            assert Path(item[key]).is_absolute() and Path(item[key]).is_file()
        assert item["image"] == [item[m] for m in MODALITIES]
    # default root is the manifest's folder, which holds none of the files: a hint, not a
    # "file not found" for the first case later in the pipeline
    with pytest.raises(DataError, match=f"pass --root {root}"):
        load_manifest(out)


def test_load_manifest_errors_name_the_manifest(tmp_path):
    root = make_brats2023(tmp_path / "d", 1)
    good = write_manifest(build_brats_manifest(root), tmp_path / "m.json")
    with pytest.raises(DataError, match="no 'test' split") as info:
        load_manifest(good, root=root, split="test")
    assert str(good) in str(info.value)
    with pytest.raises(DataError, match="unknown split"):
        load_manifest(good, root=root, split="train")  # type: ignore[arg-type]
    bad = tmp_path / "bad.json"
    bad.write_text('{"training": [')
    with pytest.raises(DataError, match="not valid JSON") as info:
        load_manifest(bad)
    assert str(bad) in str(info.value)
    escaping = json.loads(good.read_text())
    escaping["training"][0]["image"][0] = "../outside.nii.gz"
    (tmp_path / "esc.json").write_text(json.dumps(escaping))
    with pytest.raises(DataError, match="not relative to the data root"):
        load_manifest(tmp_path / "esc.json", root=root)
    with pytest.raises(DataError, match="not found"):
        load_manifest(tmp_path / "nope.json")


def test_layout_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no BraTS cases found") as info:
        build_brats_manifest(empty)
    assert str(empty) in str(info.value) and "t1ce" in str(info.value) and "t2f" in str(info.value)

    mixed = tmp_path / "mixed"
    make_brats2021(mixed, 1)
    make_brats2023(mixed, 1)
    with pytest.raises(DataError, match="mixed BraTS layouts"):
        build_brats_manifest(mixed)

    partial = make_brats2023(tmp_path / "partial", 3)
    (partial / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t2w.nii.gz").unlink()
    with pytest.raises(DataError, match="BraTS-GLI-00001-000-t2w"):
        build_brats_manifest(partial)
    m = build_brats_manifest(partial, skip_incomplete=True)
    assert [i["case_id"] for i in m["training"]] == ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000"]
    assert [e["case_id"] for e in m["medidiff"]["excluded"]] == ["BraTS-GLI-00001-000"]


def test_folder_builder_single_modality_labels_dir(tmp_path):
    root = tmp_path / "d"
    for i in range(4):
        save_nifti(root / "imagesTr" / f"case{i}.nii.gz", mock_volume((8, 8, 8), i))
        if i < 3:
            save_nifti(root / "labelsTr" / f"case{i}.nii.gz", mock_label((8, 8, 8), i))
    m = build_folder_manifest(root, "**/*.nii.gz", labels_dir="labelsTr", label_values=[0, 1, 2, 3])
    assert m["medidiff"]["source_layout"] == "generic" and m["medidiff"]["modalities"] == ["img"]
    assert [i["case_id"] for i in m["training"]] == ["case0", "case1", "case2"]  # labels not images
    assert [i["case_id"] for i in m["test"]] == ["case3"]
    assert m["training"][0] == {
        "case_id": "case0", "image": ["imagesTr/case0.nii.gz"], "label": "labelsTr/case0.nii.gz",
        "img": "imagesTr/case0.nii.gz", "has_label": True, "fold": m["training"][0]["fold"],
    }
    assert m["medidiff"]["labels"] == {"0": "label 0", "1": "label 1", "2": "label 2", "3": "label 3"}
    _assert_relative_and_present_generic(m, root)
    # glob character classes work as in the shell
    m = build_folder_manifest(root, "imagesTr/case[0-1].nii.gz")
    assert [i["case_id"] for i in m["training"]] == ["case0", "case1"]


def _assert_relative_and_present_generic(m: dict, root: Path) -> None:
    for item in _all_items(m):
        for p in item["image"] + ([item["label"]] if "label" in item else []):
            assert not os.path.isabs(p) and (root / p).is_file()


def test_folder_builder_multi_modality_and_image_only(tmp_path):
    root = tmp_path / "d"
    for i in range(3):
        cid = f"sub_{i:02d}"
        for k, mod in enumerate(("t1", "t1ce")):
            save_nifti(root / cid / f"{cid}_{mod}.nii.gz", mock_volume((8, 8, 8), 10 * i + k))
        save_nifti(root / cid / f"{cid}_seg.nii.gz", mock_label((8, 8, 8), i))
    m = build_folder_manifest(root, "{case}/{case}_{modality}.nii.gz", modalities=["t1", "t1ce"],
                              label_suffix="_seg.nii.gz")
    assert [i["case_id"] for i in m["training"]] == ["sub_00", "sub_01", "sub_02"]
    item = m["training"][1]
    assert item["image"] == ["sub_01/sub_01_t1.nii.gz", "sub_01/sub_01_t1ce.nii.gz"]
    assert item["t1ce"] == "sub_01/sub_01_t1ce.nii.gz" and item["label"] == "sub_01/sub_01_seg.nii.gz"
    out = write_manifest(m, tmp_path / "m.json")
    assert len(load_decathlon_datalist(out, base_dir=root)) == 3

    # no label option: an image-only data set, every case trains (unconditional generation)
    m2 = build_folder_manifest(root, "{case}/{case}_{modality}.nii.gz", modalities=["t1", "t1ce"])
    assert "test" not in m2 and len(m2["training"]) == 3
    assert all(i["has_label"] is False and "label" not in i for i in m2["training"])

    with pytest.raises(DataError, match="no \\{case\\}"):
        build_folder_manifest(root, "*/*_{modality}.nii.gz", modalities=["t1", "t1ce"])
    with pytest.raises(DataError, match="also matches"):
        _dup_ids(tmp_path)
    with pytest.raises(DataError, match="no files match"):
        build_folder_manifest(root, "nothing/*.nii.gz")


def _dup_ids(tmp_path: Path) -> None:
    root = tmp_path / "dup"
    save_nifti(root / "a" / "image.nii.gz", mock_volume((8, 8, 8), 0))
    save_nifti(root / "b" / "image.nii.gz", mock_volume((8, 8, 8), 1))
    build_folder_manifest(root, "*/image.nii.gz")  # both cases would be called "image"


def test_cli_build_and_dry_run(tmp_path, capsys):
    root = make_brats2023(tmp_path / "d", 4)
    out = tmp_path / "data_manifests" / "brats.json"
    assert main(["manifest", "build", "brats", str(root), "-o", str(out), "--dry-run"]) == 0
    assert not out.exists() and "folds: 5" in capsys.readouterr().out
    assert main(["manifest", "build", "brats", str(root), "-o", str(out), "--folds", "2", "--seed", "7"]) == 0
    meta = json.loads(out.read_text())["medidiff"]
    assert meta["num_folds"] == 2 and meta["seed"] == 7 and meta["root_hint"] == str(root.absolute())
    assert main(["manifest", "build", "brats", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "data root is not a directory" in capsys.readouterr().err
    assert main(["manifest", "build", "folder", str(root), "--images-glob", "{case}/{case}-{modality}.nii.gz",
                 "--modalities", *MODALITIES, "--label-suffix=-seg.nii.gz", "-o", str(out)]) == 0
    assert len(json.loads(out.read_text())["training"]) == 4
