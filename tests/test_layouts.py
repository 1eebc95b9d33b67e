"""Output layouts (medidiff.layouts): BraTS 2023/2021 folders that medidiff's own manifest builder
reads back, and nnU-Net v2 raw data sets (from generate, and mixed with real training cases by
export-dataset) that pass nnU-Net's invariants, checked here independently and, when nnunetv2 and
its image readers are importable, by nnU-Net's own verify_dataset_integrity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medidiff.cli.main import main
from medidiff.config import load_config
from medidiff.data.brats import BRATS_SHAPE, LABEL_CONVENTIONS, MODALITIES, to_convention
from medidiff.data.manifest import build_brats_manifest, read_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.generation import export_run
from medidiff.io import SYNTHETIC_DESCRIP, read_provenance, source_record
from medidiff.layouts import NNUNET_LABELS, NNUNET_REGIONS_CLASS_ORDER
from medidiff.training.diffusion import run_dir_of, train_diffusion

SHAPE = (16, 16, 16)
HELD_OUT = 0  # the model's data.fold; phantom cases 0, 1 are in fold 0 and 2, 3 in fold 1 (seed 0, 2 folds)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(model folder, its training manifest, data root): a tiny label-generating model that held out fold 0."""
    tmp = tmp_path_factory.mktemp("layouts")
    write_phantom_dataset(tmp / "data", 4, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    folds = {it["case_id"]: it["fold"] for it in read_manifest(tmp / "m.json")["training"]}
    assert sorted(folds.values()) == [0, 0, 1, 1], folds
    cfg = load_config(None, [
        "name=tiny", f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}",
        f"data.fold={HELD_OUT}", f"data.roi={list(SHAPE)}", "data.cache=memory", "data.label_mode=regions",
        "conditioning.generate_labels=true", "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8",
        "objective.type=flow", "sampler.name=euler", "sampler.num_steps=2", "train.max_steps=2",
        "train.micro_batch=2", "train.precision=fp32", "train.device=cpu", "train.log_every=1",
        "train.warmup_steps=1", "train.preview_every=0",
    ])
    train_diffusion(cfg, progress=False)
    return export_run(run_dir_of(cfg), tmp / "model"), tmp / "m.json", tmp / "data"


def _generate(model: Path, out: Path, *extra: str, num: int = 2) -> int:
    return main(["generate", "--model", str(model), "--num", str(num), "--out", str(out), "--steps", "2",
                 "--geometry", "native", "--no-progress", *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _data(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


# ------------------------------------------------------------------------------------------------
# BraTS layouts
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(model, tmp_path_factory) -> Path:
    """Two cases in medidiff's own layout: the reference the other layouts must equal."""
    out = tmp_path_factory.mktemp("plain") / "gen"
    assert _generate(model[0], out) == 0
    return out


def test_brats_layout_round_trips_through_manifest_build_and_validate(model, plain, tmp_path, capsys):
    out = tmp_path / "brats"
    assert _generate(model[0], out, "--layout", "brats") == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["BraTS-SYN-00000-000", "BraTS-SYN-00001-000"]
    case = out / "BraTS-SYN-00001-000"
    for m in (*MODALITIES, "seg"):
        f = case / f"BraTS-SYN-00001-000-{m}.nii.gz"
        ref = plain / "case_0001" / f"{m}.nii.gz"
        np.testing.assert_array_equal(_data(f), _data(ref))  # the same case, only named differently
        assert SYNTHETIC_DESCRIP.encode()[:40] in nib.load(f).header["descrip"].tobytes()
        assert read_provenance(f)["case"] == "BraTS-SYN-00001-000" and read_provenance(f)["seed"] == 1
        assert (case / f"BraTS-SYN-00001-000-{m}.json").is_file()  # provenance sidecar
    prov = json.loads((case / "provenance.json").read_text())
    assert prov["label_convention"] == "brats2023" and prov["label_convention_from"] == "--layout brats"
    manifest = build_brats_manifest(out, num_folds=2)
    assert manifest["medidiff"]["source_layout"] == "brats2023" and manifest["medidiff"]["label_map"] == {}
    items = {it["case_id"]: it for it in manifest["training"]}
    assert sorted(items) == ["BraTS-SYN-00000-000", "BraTS-SYN-00001-000"]
    assert items["BraTS-SYN-00001-000"]["subject_id"] == "BraTS-SYN-00001"  # the time point is parsed
    capsys.readouterr()
    assert main(["manifest", "build", "brats", str(out), "-o", str(tmp_path / "m.json")]) == 0
    assert main(["manifest", "validate", str(tmp_path / "m.json"), "--root", str(out), "--no-progress"]) == 0, \
        capsys.readouterr()
    # resume: a second run finds both cases finished and writes nothing
    before = (case / "BraTS-SYN-00001-000-t1n.nii.gz").stat().st_mtime_ns
    assert _generate(model[0], out, "--layout", "brats") == 0
    assert (case / "BraTS-SYN-00001-000-t1n.nii.gz").stat().st_mtime_ns == before


def test_brats2021_layout_writes_2021_names_and_labels_and_reads_back(model, plain, tmp_path, capsys):
    out = tmp_path / "b21"
    assert _generate(model[0], out, "--layout", "brats2021") == 0
    case = out / "BraTS2021_SYN00001"
    names = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}
    for m, suffix in names.items():
        np.testing.assert_array_equal(_data(case / f"BraTS2021_SYN00001_{suffix}.nii.gz"),
                                      _data(plain / "case_0001" / f"{m}.nii.gz"))
    seg = _data(case / "BraTS2021_SYN00001_seg.nii.gz")
    np.testing.assert_array_equal(seg, to_convention(_data(plain / "case_0001" / "seg.nii.gz"), "brats2021"))
    assert set(np.unique(seg)) <= {0, 1, 2, 4}
    prov = json.loads((case / "provenance.json").read_text())
    assert prov["label_convention"] == "brats2021" and prov["labels"]["4"] == "ET"
    manifest = build_brats_manifest(out, num_folds=2)
    assert manifest["medidiff"]["source_layout"] == "brats2021" and manifest["medidiff"]["label_map"] == {"4": 3}
    assert sorted(it["case_id"] for it in manifest["training"]) == ["BraTS2021_SYN00000", "BraTS2021_SYN00001"]
    write_manifest(manifest, tmp_path / "m21.json")
    capsys.readouterr()
    assert main(["manifest", "validate", str(tmp_path / "m21.json"), "--root", str(out), "--no-progress"]) == 0, \
        capsys.readouterr()


def test_brats_layouts_default_to_the_brats_grid(model, tmp_path, capsys):
    base = ["generate", "--model", str(model[0]), "--num", "1", "--out", str(tmp_path / "o"), "--dry-run"]
    for layout, geometry in (("brats", "brats"), ("brats2021", "brats"), ("medidiff", "native")):
        assert main([*base, "--layout", layout]) == 0
        assert f"geometry: {geometry}" in capsys.readouterr().out, layout
    assert main([*base, "--layout", "brats", "--geometry", "native"]) == 0
    assert "geometry: native" in capsys.readouterr().out


@pytest.mark.slow
def test_brats_layout_in_the_brats_grid(model, tmp_path):
    out = tmp_path / "b"
    assert main(["generate", "--model", str(model[0]), "--num", "1", "--out", str(out), "--steps", "2",
                 "--layout", "brats", "--no-progress"]) == 0
    assert nib.load(out / "BraTS-SYN-00000-000" / "BraTS-SYN-00000-000-t2f.nii.gz").shape == BRATS_SHAPE


def test_one_folder_holds_one_layout(model, plain, tmp_path, capsys):
    import shutil

    out = tmp_path / "mixed"
    shutil.copytree(plain, out)
    assert _generate(model[0], out, "--layout", "brats") == 2
    err = _one_line_error(capsys)
    assert "case_0000" in err and "medidiff layout" in err and "--overwrite" in err
    assert _generate(model[0], out, "--layout", "brats", "--overwrite") == 0
    assert not list(out.glob("case_*")) and len(list(out.glob("BraTS-SYN-*"))) == 2


# ------------------------------------------------------------------------------------------------
# nnU-Net
# ------------------------------------------------------------------------------------------------


def check_nnunet_dataset(folder: Path) -> dict:
    """nnU-Net v2's raw data set rules, checked without nnU-Net: dataset.json keys, one label file
    and one file per channel for each of numTraining cases and nothing else under those names,
    equal shapes and affines within a case, label values those the labels declare, consecutive
    from 0 (nnU-Net refuses gaps), and regions_class_order with one entry per region."""
    meta = json.loads((folder / "dataset.json").read_text())
    assert {"channel_names", "labels", "numTraining", "file_ending"} <= meta.keys()
    ending, channels = meta["file_ending"], meta["channel_names"]
    assert sorted(channels, key=int) == [str(k) for k in range(len(channels))]
    labels = meta["labels"]
    assert labels["background"] == 0
    values = sorted({0} | {v for r in labels.values() for v in (r if isinstance(r, list) else [r])})
    assert values == list(range(len(values))), values
    regions = [k for k in labels if k != "background"]
    assert len(meta["regions_class_order"]) == len(regions)
    label_files = sorted((folder / "labelsTr").glob(f"*{ending}"))
    ids = [p.name[: -len(ending)] for p in label_files]
    assert len(ids) == meta["numTraining"]
    images = sorted(p.name for p in (folder / "imagesTr").glob(f"*{ending}"))
    assert images == sorted(f"{cid}_{k:04d}{ending}" for cid in ids for k in range(len(channels)))
    assert not [p for p in (folder / "imagesTr").iterdir() if not p.name.endswith(ending)]
    for cid in ids:
        seg = nib.load(folder / "labelsTr" / f"{cid}{ending}")
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= set(values), cid
        for k in range(len(channels)):
            img = nib.load(folder / "imagesTr" / f"{cid}_{k:04d}{ending}")
            assert img.shape == seg.shape and img.ndim == 3, cid
            np.testing.assert_allclose(img.affine, seg.affine, atol=1e-5)
    return meta


def nnunet_verify(folder: Path) -> None:
    """nnU-Net's own check (its SimpleITK reader, spawned workers), or a skip saying what is missing."""
    try:
        from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    except ImportError as exc:
        pytest.skip(f"nnunetv2's verify_dataset_integrity is not importable ({exc}): it needs nnunetv2, "
                    "batchgenerators, acvl_utils, blosc2, SimpleITK and scikit-image")
    verify_dataset_integrity(str(folder), num_processes=1)


@pytest.fixture(scope="module")
def nnunet_gen(model, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("nnunet_raw")
    assert _generate(model[0], raw, "--layout", "nnunet", "--dataset-id", "501", "--dataset-name", "Syn") == 0
    return raw / "Dataset501_Syn"


def test_nnunet_layout_from_generate(model, plain, nnunet_gen):
    meta = check_nnunet_dataset(nnunet_gen)
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    assert meta["channel_names"] == {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}
    assert meta["labels"] == NNUNET_LABELS and meta["regions_class_order"] == NNUNET_REGIONS_CLASS_ORDER
    for k, m in enumerate(MODALITIES):
        f = nnunet_gen / "imagesTr" / f"SYN_00001_{k:04d}.nii.gz"
        np.testing.assert_array_equal(_data(f), _data(plain / "case_0001" / f"{m}.nii.gz"))
        assert read_provenance(f)["seed"] == 1 and b"SYNTHETIC" in nib.load(f).header["descrip"].tobytes()
    np.testing.assert_array_equal(_data(nnunet_gen / "labelsTr" / "SYN_00001.nii.gz"),
                                  _data(plain / "case_0001" / "seg.nii.gz"))
    prov = json.loads((nnunet_gen / "medidiff" / "SYN_00001.provenance.json").read_text())
    assert prov["case"] == "SYN_00001" and prov["label_convention"] == "brats2023"
    assert (nnunet_gen / "medidiff" / "SYN_00001.png").is_file()
    assert not list((nnunet_gen / "labelsTr").glob("*.json"))  # nnU-Net folders hold volumes only


def test_region_order_turns_regions_back_into_labels():
    """nnU-Net writes regions in regions_class_order over each other: that must give our labels back."""
    labels = np.arange(4).repeat(3)
    regions = [np.isin(labels, NNUNET_LABELS[k]) for k in ("whole_tumor", "tumor_core", "enhancing_tumor")]
    rebuilt = np.zeros_like(labels)
    for region, value in zip(regions, NNUNET_REGIONS_CLASS_ORDER):
        rebuilt[region] = value
    np.testing.assert_array_equal(rebuilt, labels)
    assert {"1": "NCR/NETC", "2": "SNFH/ED", "3": "ET"} == {str(k): v for k, v in LABEL_CONVENTIONS["brats2023"].items() if k}


def test_nnunet_generate_resumes_refuses_other_requests_and_redoes_interrupted_cases(model, tmp_path, capsys):
    raw = tmp_path / "raw"
    args = ["--layout", "nnunet", "--dataset-id", "7", "--dataset-name", "Syn"]
    assert _generate(model[0], raw, *args) == 0
    ds = raw / "Dataset007_Syn"
    label = ds / "labelsTr" / "SYN_00000.nii.gz"
    before = label.stat().st_mtime_ns
    assert _generate(model[0], raw, *args) == 0 and label.stat().st_mtime_ns == before
    capsys.readouterr()
    assert _generate(model[0], raw, *args, "--seed", "9") == 2
    err = _one_line_error(capsys)
    assert "SYN_00000" in err and "seed" in err and "--overwrite" in err
    # an interrupted case (volumes, no provenance) beyond --num is removed, so dataset.json counts only whole cases
    (ds / "imagesTr" / "SYN_00005_0000.nii.gz").write_bytes(b"partial")
    (ds / "medidiff" / "SYN_00001.provenance.json").unlink()  # case 1 interrupted before its provenance
    assert _generate(model[0], raw, *args) == 0
    assert "1 case(s) written" in capsys.readouterr().out
    assert not (ds / "imagesTr" / "SYN_00005_0000.nii.gz").exists()
    assert check_nnunet_dataset(ds)["numTraining"] == 2
    assert _generate(model[0], raw, *args, "--seed", "9", "--overwrite") == 0
    assert json.loads((ds / "medidiff" / "SYN_00000.provenance.json").read_text())["seed"] == 9
    assert check_nnunet_dataset(ds)["numTraining"] == 2 and not list(ds.rglob(".tmp_*"))


@pytest.mark.parametrize("extra, word", [
    (["--layout", "nnUNet"], "unknown layout"),
    (["--layout", "nnunet"], "--dataset-id"),
    (["--layout", "nnunet", "--dataset-id", "0", "--dataset-name", "A"], "1..999"),
    (["--layout", "nnunet", "--dataset-id", "1000", "--dataset-name", "A"], "1..999"),
    (["--layout", "nnunet", "--dataset-id", "x", "--dataset-name", "A"], "1..999"),
    (["--layout", "nnunet", "--dataset-id", "5", "--dataset-name", "a b"], "--dataset-name"),
    (["--layout", "nnunet", "--dataset-id", "5", "--dataset-name", "../up"], "--dataset-name"),
    (["--layout", "brats", "--dataset-id", "5"], "--layout nnunet"),
    (["--layout", "brats2021", "--label-convention", "brats2023"], "brats2021"),
    (["--layout", "nnunet", "--dataset-id", "5", "--dataset-name", "A", "--label-convention", "brats2021"],
     "consecutive"),
])
def test_bad_layout_requests_are_one_line_errors(model, tmp_path, capsys, extra, word):
    assert _generate(model[0], tmp_path / "o", *extra) == 2
    assert word in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_generate_refuses_a_dataset_id_another_name_has(model, tmp_path, capsys):
    (tmp_path / "Dataset005_Other").mkdir()
    assert _generate(model[0], tmp_path, "--layout", "nnunet", "--dataset-id", "5", "--dataset-name", "A") == 2
    assert "Dataset005_Other" in _one_line_error(capsys)


# ------------------------------------------------------------------------------------------------
# export-dataset nnunet
# ------------------------------------------------------------------------------------------------


def _export(generated: Path, raw: Path, *extra: str, dataset_id: str = "502", name: str = "Mix") -> int:
    return main(["export-dataset", "nnunet", str(generated), "-o", str(raw), "--dataset-id", dataset_id,
                 "--dataset-name", name, *extra])


def test_export_mixes_synthetic_with_the_real_training_folds_only(model, plain, tmp_path, capsys):
    _, manifest, data = model
    raw = tmp_path / "raw"
    assert _export(plain, raw, "--real", str(manifest), "--root", str(data)) == 0
    assert "nnUNetv2_plan_and_preprocess -d 502" in capsys.readouterr().out
    ds = raw / "Dataset502_Mix"
    meta = check_nnunet_dataset(ds)
    training = sorted(it["case_id"] for it in read_manifest(manifest)["training"] if it["fold"] != HELD_OUT)
    ids = sorted(p.name[: -len(".nii.gz")] for p in (ds / "labelsTr").iterdir())
    assert ids == sorted(["SYN_00000", "SYN_00001", *training])  # no held-out case
    assert meta["numTraining"] == 4
    record = json.loads((ds / "medidiff" / "export.json").read_text())
    assert record["real_from"]["folds"] == [1] and record["real_from"]["generator_held_out_fold"] == HELD_OUT
    assert str(tmp_path) not in json.dumps(record)  # no local paths in a data set that may be shared
    # synthetic files are hard links of the generated ones, stamp and provenance included
    syn = ds / "imagesTr" / "SYN_00001_0002.nii.gz"
    assert os.path.samefile(syn, plain / "case_0001" / "t2w.nii.gz")
    assert read_provenance(syn)["synthetic"] is True
    real_item = next(it for it in read_manifest(manifest)["training"] if it["case_id"] == training[0])
    np.testing.assert_array_equal(_data(ds / "labelsTr" / f"{training[0]}.nii.gz"), _data(data / real_item["label"]))
    assert json.loads((ds / "medidiff" / "SYN_00001.provenance.json").read_text())["seed"] == 1


def test_export_refuses_held_out_real_folds_and_masks(model, plain, tmp_path, capsys):
    _, manifest, data = model
    raw = tmp_path / "raw"
    assert _export(plain, raw, "--real", str(manifest), "--root", str(data), "--real-folds", "0", "1") == 2
    err = _one_line_error(capsys)
    assert "--real-folds" in err and f"fold {HELD_OUT}" in err and "held out" in err
    # a synthetic case whose mask came from a held-out case: a segmenter trained on the set sees test labels
    import shutil

    leaky = tmp_path / "leaky"
    shutil.copytree(plain, leaky)
    held = next(it["case_id"] for it in read_manifest(manifest)["training"] if it["fold"] == HELD_OUT)
    prov_file = leaky / "case_0000" / "provenance.json"
    prov = json.loads(prov_file.read_text())
    prov["mask"] = source_record(held, manifest, fold=HELD_OUT)[0]
    prov_file.write_text(json.dumps(prov))
    assert _export(leaky, raw, "--real", str(manifest), "--root", str(data)) == 2
    assert "held-out fold" in _one_line_error(capsys)
    # another manifest than the generator's: its folds must be named
    other = tmp_path / "other.json"
    write_manifest(build_brats_manifest(data, num_folds=3), other)
    assert _export(plain, raw, "--real", str(other), "--root", str(data)) == 2
    assert "--real-folds" in _one_line_error(capsys)
    assert not raw.exists() or not list(raw.glob("Dataset*"))  # nothing half-built


def test_export_refuses_an_existing_dataset_unless_overwrite_and_copies_on_request(model, plain, tmp_path, capsys):
    raw = tmp_path / "raw"
    assert _export(plain, raw) == 0
    assert _export(plain, raw) == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert _export(plain, raw, "--overwrite", "--copy") == 0
    f = raw / "Dataset502_Mix" / "imagesTr" / "SYN_00000_0000.nii.gz"
    assert not os.path.samefile(f, plain / "case_0000" / "t1n.nii.gz")
    np.testing.assert_array_equal(_data(f), _data(plain / "case_0000" / "t1n.nii.gz"))
    assert _export(plain, raw, dataset_id="502", name="Another") == 2
    assert "Dataset502_Mix" in _one_line_error(capsys)
    from medidiff.files import folder_lock

    with folder_lock(raw / "Dataset502_Mix", "generate"):  # a generate writing the set it would replace
        assert _export(plain, raw, "--overwrite") == 2
        assert "in use by" in _one_line_error(capsys)
    assert os.path.samefile(f, f)  # the set is still there


@pytest.mark.parametrize("extra, word", [
    (["--dataset-id", "0"], "1..999"),
    (["--dataset-id", "abc"], "1..999"),
    (["--dataset-name", "x/y"], "--dataset-name"),
    (["--real-folds", "1"], "--real"),
])
def test_export_bad_input_is_one_line(plain, tmp_path, capsys, extra, word):
    args = ["export-dataset", "nnunet", str(plain), "-o", str(tmp_path / "raw"), "--dataset-id", "9",
            "--dataset-name", "A", *extra]
    assert main(args) == 2
    assert word in _one_line_error(capsys)
    assert main(["export-dataset", "monai", str(plain), "-o", str(tmp_path), "--dataset-id", "9",
                 "--dataset-name", "A"]) == 2
    assert "unknown format" in _one_line_error(capsys)
    assert main(["export-dataset", "nnunet", str(tmp_path), "-o", str(tmp_path / "raw"), "--dataset-id", "9",
                 "--dataset-name", "A"]) == 2
    assert "no finished generated case" in _one_line_error(capsys)


def test_export_maps_2021_labels_to_consecutive_values(model, tmp_path):
    """A BraTS 2021 set (ET = 4), synthetic and as 'real' cases: labelsTr holds 3, nnU-Net's values."""
    gen = tmp_path / "b21"
    assert _generate(model[0], gen, "--layout", "brats2021") == 0
    seg_file = gen / "BraTS2021_SYN00000" / "BraTS2021_SYN00000_seg.nii.gz"
    seg = _data(seg_file).copy()
    seg[:2] = 4  # make sure ET is there whatever the tiny model drew
    img = nib.load(seg_file)
    from medidiff.io import write_nifti

    write_nifti(seg_file, seg, img.affine, provenance=read_provenance(seg_file), is_label=True)
    write_manifest(build_brats_manifest(gen, num_folds=1), tmp_path / "m21.json")
    raw = tmp_path / "raw"
    assert _export(gen, raw, "--real", str(tmp_path / "m21.json"), "--root", str(gen), "--real-folds", "0") == 0
    ds = raw / "Dataset502_Mix"
    check_nnunet_dataset(ds)
    for name in ("SYN_00000", "BraTS2021_SYN00000"):  # the synthetic copy and the 'real' one
        out = _data(ds / "labelsTr" / f"{name}.nii.gz")
        np.testing.assert_array_equal(out, np.where(seg == 4, 3, seg))
    exported = ds / "labelsTr" / "SYN_00000.nii.gz"
    assert read_provenance(exported)["label_convention"] == "brats2023" and read_provenance(exported)["seed"] == 0
    assert b"SYNTHETIC" in nib.load(exported).header["descrip"].tobytes()


@pytest.mark.slow
def test_nnunet_accepts_what_we_write(model, plain, nnunet_gen, tmp_path):
    """nnU-Net's own verify_dataset_integrity on a generated set and on a real + synthetic export."""
    _, manifest, data = model
    nnunet_verify(nnunet_gen)
    assert _export(plain, tmp_path, "--real", str(manifest), "--root", str(data), "--with-test") == 0
    nnunet_verify(tmp_path / "Dataset502_Mix")


def test_export_reads_a_generated_nnunet_set_and_generate_keeps_out_of_exported_ones(model, nnunet_gen, tmp_path,
                                                                                      capsys):
    raw = tmp_path / "raw"
    assert _export(nnunet_gen, raw, dataset_id="503", name="Again") == 0
    meta = check_nnunet_dataset(raw / "Dataset503_Again")
    assert meta["numTraining"] == 2 and meta["channel_names"] == {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"}
    assert os.path.samefile(raw / "Dataset503_Again" / "labelsTr" / "SYN_00001.nii.gz",
                            nnunet_gen / "labelsTr" / "SYN_00001.nii.gz")
    capsys.readouterr()
    # resuming generate into an exported set would count its real cases as a run's: refused
    assert _generate(model[0], raw, "--layout", "nnunet", "--dataset-id", "503", "--dataset-name", "Again") == 2
    assert "export-dataset" in _one_line_error(capsys)


def test_evaluate_reads_every_layout(plain, nnunet_gen, model, tmp_path):
    """evaluate's reader (eval.data.synthetic_items) gives the same cases and labels in every layout."""
    import dataclasses

    from medidiff.data.transforms import LABEL, build_transforms
    from medidiff.eval.data import synthetic_items
    from medidiff.generation import DiffusionPipeline

    assert _generate(model[0], tmp_path / "b21", "--layout", "brats2021") == 0
    data = dataclasses.replace(DiffusionPipeline.from_pretrained(model[0]).cfg.data, label_mode="labels",
                               cache="none", roi=SHAPE)
    tf = build_transforms(data, train=False)
    want = [tf({k: v for k, v in it.items() if k != "provenance"})[LABEL].numpy()
            for it in synthetic_items(plain, data.modalities)]
    for folder in (tmp_path / "b21", nnunet_gen):
        items = synthetic_items(folder, data.modalities)
        assert [it["provenance"]["seed"] for it in items] == [0, 1]
        for it, label in zip(items, want):
            it.pop("provenance")
            np.testing.assert_array_equal(tf(it)[LABEL].numpy(), label)  # 2021's ET = 4 read back as 3


def test_export_takes_finished_cases_only_and_keeps_their_index(plain, tmp_path, capsys):
    import shutil

    gen = tmp_path / "gen"
    shutil.copytree(plain, gen)
    (gen / "case_0000" / "provenance.json").unlink()  # interrupted: not a case yet
    raw = tmp_path / "raw"
    assert _export(gen, raw) == 0
    assert "1 unfinished generated case(s) left out" in capsys.readouterr().out
    ds = raw / "Dataset502_Mix"
    assert [p.name for p in (ds / "labelsTr").iterdir()] == ["SYN_00001.nii.gz"]  # case_0001 -> SYN_00001
    assert check_nnunet_dataset(ds)["numTraining"] == 1
    assert json.loads((ds / "medidiff" / "SYN_00001.provenance.json").read_text())["exported_from"]["case"] == \
        "case_0001"


def test_export_with_test_puts_the_held_out_fold_in_imagests_only(model, plain, tmp_path, capsys):
    _, manifest, data = model
    raw = tmp_path / "raw"
    assert _export(plain, raw, "--real", str(manifest), "--root", str(data), "--with-test") == 0
    ds = raw / "Dataset502_Mix"
    check_nnunet_dataset(ds)
    held = sorted(it["case_id"] for it in read_manifest(manifest)["training"] if it["fold"] == HELD_OUT)
    assert sorted(p.name for p in (ds / "labelsTs").iterdir()) == [f"{c}.nii.gz" for c in held]
    assert sorted(p.name for p in (ds / "imagesTs").iterdir()) == \
        sorted(f"{c}_{k:04d}.nii.gz" for c in held for k in range(4))
    assert not {p.name[:-7] for p in (ds / "labelsTr").iterdir()} & set(held)
    assert json.loads((ds / "medidiff" / "export.json").read_text())["test_cases"] == len(held)
    capsys.readouterr()
    assert _export(plain, raw, "--with-test", "--overwrite") == 2
    assert "--with-test needs --real" in _one_line_error(capsys)
    other = tmp_path / "other.json"
    write_manifest(build_brats_manifest(data, num_folds=3), other)
    assert _export(plain, raw, "--real", str(other), "--root", str(data), "--real-folds", "1", "--with-test",
                   "--overwrite") == 2
    assert "no held-out fold" in _one_line_error(capsys)


def test_real_only_baseline_has_the_same_real_cases(model, plain, tmp_path, capsys):
    _, manifest, data = model
    raw = tmp_path / "raw"
    args = ["--real", str(manifest), "--root", str(data), "--with-test"]
    assert _export(plain, raw, *args) == 0
    assert _export(plain, raw, *args, "--real-only", dataset_id="503", name="Real") == 0
    mix, real = raw / "Dataset502_Mix", raw / "Dataset503_Real"
    assert check_nnunet_dataset(real)["numTraining"] == 2
    names = lambda ds, sub: sorted(p.name for p in (ds / sub).iterdir())  # noqa: E731
    assert names(real, "labelsTr") == [n for n in names(mix, "labelsTr") if not n.startswith("SYN_")]
    assert names(real, "labelsTs") == names(mix, "labelsTs")
    capsys.readouterr()
    assert _export(plain, raw, "--real-only", dataset_id="504", name="X") == 2
    assert "--real-only needs --real" in _one_line_error(capsys)
