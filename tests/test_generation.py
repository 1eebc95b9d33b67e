"""Diffusion stage end to end on tiny phantoms: train -> export -> from_pretrained -> generate."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medidiff.cli.main import main
from medidiff.config import load_config
from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.generation import DiffusionPipeline, export_run, regions_to_labels
from medidiff.io import read_provenance
from medidiff.training import checkpoint as ckpt
from medidiff.training.diffusion import run_dir_of, train_diffusion

SHAPE = (16, 16, 16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("gen")
    write_phantom_dataset(tmp / "data", 4, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    cfg = load_config(None, [
        "name=tiny", f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}", "data.fold=null",
        f"data.roi={list(SHAPE)}", "data.cache=memory", "data.label_mode=regions", "conditioning.generate_labels=true", "net.channels=[16, 32]", "net.num_res_blocks=1",
        "net.norm_groups=8", "objective.type=flow", "sampler.name=euler", "sampler.num_steps=4",
        "train.max_steps=6", "train.micro_batch=2", "train.precision=fp32", "train.device=cpu",
        "train.ckpt_every=3", "train.log_every=1", "train.warmup_steps=1", "train.preview_every=3",
    ])
    result = train_diffusion(cfg, progress=False)
    assert result.final_step == 6
    model = export_run(run_dir_of(cfg), tmp / "model")
    return run_dir_of(cfg), model


def test_training_logs_per_band_losses_and_saves_codec_stats(trained):
    run, _ = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert {"loss/band/LLL", "loss/band/HHH", "loss/modality/t1n", "loss/modality/ET"} <= rows[-1].keys()
    codec = json.loads((run / "codec" / "config.json").read_text())
    assert codec["mean"] is not None and len(codec["std"]) == 8 * 7  # 4 modalities + 3 regions


def test_training_writes_sample_previews(trained):
    run, _ = trained
    previews = sorted((run / "previews").glob("step_*.png"))
    assert [p.name for p in previews] == ["step_00000003.png", "step_00000006.png"]
    assert previews[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_holds_the_ema_weights(trained):
    run, model = trained
    ema = ckpt.load_tensors(ckpt.latest_complete(ckpt.checkpoint_root(run)) / "ema.safetensors")
    pipe = DiffusionPipeline.from_pretrained(model)
    state = pipe.net.state_dict()
    for k, v in ema.items():
        assert torch.equal(state[k].float(), v), k


def test_same_seed_same_case_alone_or_in_a_batch(trained):
    _, model = trained
    pipe = DiffusionPipeline.from_pretrained(model)
    both = pipe([3, 4])
    alone = pipe([4])
    np.testing.assert_allclose(both[1].images, alone[0].images, atol=1e-5)
    assert both[0].images.shape == (4, *SHAPE) and np.abs(both[0].images).max() <= 1
    assert set(np.unique(both[0].label)) <= {0, 1, 2, 3}


def test_generate_writes_nifti_with_labels_provenance_and_skips_finished(trained, tmp_path):
    _, model = trained
    out = tmp_path / "gen"
    args = ["generate", "--model", str(model), "--num", "2", "--out", str(out), "--steps", "3", "--no-progress"]
    assert main(args) == 0
    case = out / "case_0001"
    for name in ("t1n", "t1c", "t2w", "t2f", "seg"):
        img = nib.load(case / f"{name}.nii.gz")
        assert img.shape == SHAPE
        assert b"SYNTHETIC" in img.header["descrip"].tobytes()
        assert read_provenance(case / f"{name}.nii.gz")["seed"] == 1
    assert nib.load(case / "seg.nii.gz").get_data_dtype() == np.uint8
    prov = json.loads((case / "provenance.json").read_text())
    assert prov["steps"] == 3 and prov["sampler"] == "euler" and len(prov["model_hash"]) == 16
    assert (case / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = (case / "t1n.nii.gz").stat().st_mtime_ns
    assert main(args) == 0  # re-run: nothing to do
    assert (case / "t1n.nii.gz").stat().st_mtime_ns == before


def test_generate_in_brats_geometry(trained, tmp_path):
    _, model = trained
    out = tmp_path / "brats"
    assert main(["generate", "--model", str(model), "--num", "1", "--out", str(out), "--steps", "2",
                 "--geometry", "brats", "--no-progress"]) == 0
    img = nib.load(out / "case_0000" / "t2f.nii.gz")
    assert img.shape == BRATS_SHAPE
    np.testing.assert_allclose(img.affine, BRATS_AFFINE)
    data = np.asarray(img.dataobj)
    assert data[0, 0, 0] == 0 and data.max() > 0  # the model grid sits inside, background 0


def test_regions_to_labels_keeps_nesting():
    wt = np.zeros((4, 4, 4), bool); wt[1:3] = True
    tc = np.zeros_like(wt); tc[1, 1:3] = True
    et = np.zeros_like(wt); et[1, 1, 1] = True
    label = regions_to_labels(np.stack([wt, tc, et]))
    assert label[1, 1, 1] == 3 and label[1, 2, 1] == 1 and label[2, 0, 0] == 2 and label[0, 0, 0] == 0


def test_generate_errors_are_clear(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path), "--num", "1", "--out", str(tmp_path / "o")]) == 2
    assert "not a medidiff model folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mask_model(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("maskgen")
    write_phantom_dataset(tmp / "data", 4, shape=(32, 32, 24), seed=1, tumour_fraction=1.0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    cfg = load_config(None, [
        "name=masked", f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}",
        "data.fold=null", f"data.roi={list(SHAPE)}", "data.cache=memory", "data.label_mode=regions",
        "conditioning.mask=true", "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8",
        "objective.type=flow", "sampler.name=euler", "sampler.num_steps=3", "sampler.clip_x0=true",
        "train.max_steps=3", "train.micro_batch=2", "train.precision=fp32", "train.device=cpu",
        "train.log_every=1", "train.warmup_steps=1", "train.preview_every=3",
    ])
    train_diffusion(cfg, progress=False)
    assert (run_dir_of(cfg) / "previews" / "step_00000003.png").is_file()  # mask-conditioned preview
    return export_run(run_dir_of(cfg), tmp / "model")


def _write_label(path: Path, label: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), str(path))


def test_mask_conditioned_generation_writes_the_given_mask(mask_model, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    label = np.zeros(SHAPE, np.uint8)
    label[4:10, 4:10, 4:10] = 2
    label[6:8, 6:8, 6:8] = 1
    label[5, 5, 5] = 3
    _write_label(masks / "a.nii.gz", label)
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(mask_model), "--num", "2", "--out", str(out), "--masks", str(masks),
                 "--no-progress"]) == 0
    written = np.asarray(nib.load(out / "case_0001" / "seg.nii.gz").dataobj)
    np.testing.assert_array_equal(written, label)  # the conditioning mask is the case's label


def test_bad_masks_are_clear_errors(mask_model, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    _write_label(masks / "wrong_shape.nii.gz", np.zeros((8, 8, 8)))
    args = ["generate", "--model", str(mask_model), "--num", "1", "--out", str(tmp_path / "o"), "--masks", str(masks)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "wrong_shape.nii.gz" in err and "shape" in err
    (masks / "wrong_shape.nii.gz").unlink()
    bad = np.zeros(SHAPE)
    bad[0, 0, 0] = 5
    _write_label(masks / "bad_labels.nii.gz", bad)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bad_labels.nii.gz" in err and "[5]" in err
    assert main(args[:-2]) == 2
    assert "mask-conditioned" in capsys.readouterr().err


def test_masks_from_a_manifest_go_through_the_data_pipeline(mask_model, tmp_path):
    from medidiff.data.manifest import load_manifest
    from medidiff.data.masks import model_grid_labels

    tmp = mask_model.parent
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(mask_model), "--num", "2", "--out", str(out), "--masks",
                 str(tmp / "m.json"), "--root", str(tmp / "data"), "--no-progress"]) == 0
    pipe = DiffusionPipeline.from_pretrained(mask_model)
    expected = model_grid_labels(load_manifest(tmp / "m.json", tmp / "data")[:2], pipe.cfg.data)
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(nib.load(out / f"case_{i:04d}" / "seg.nii.gz").dataobj), expected[i])
    assert json.loads((out / "case_0000" / "provenance.json").read_text())["mask"].endswith("#BraTS-GLI-00000-000")


def test_generate_in_a_reference_case_grid(trained, tmp_path):
    _, model = trained
    tmp = model.parent
    out = tmp_path / "ref"
    assert main(["generate", "--model", str(model), "--num", "1", "--out", str(out), "--steps", "2",
                 "--reference", str(tmp / "m.json"), "--root", str(tmp / "data"),
                 "--reference-case", "BraTS-GLI-00001-000", "--no-progress"]) == 0
    ref = nib.load(tmp / "data" / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-t1n.nii.gz")
    for name in ("t1n", "seg"):
        img = nib.load(out / "case_0000" / f"{name}.nii.gz")
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    data = np.asarray(nib.load(out / "case_0000" / "t1n.nii.gz").dataobj)
    assert data.max() > 0
    prov = json.loads((out / "case_0000" / "provenance.json").read_text())
    assert prov["geometry"] == "reference BraTS-GLI-00001-000"


def test_masks_come_from_named_folds_and_record_their_source(mask_model, tmp_path, capsys):
    from medidiff.data.manifest import load_manifest
    from medidiff.data.mask_sources import file_sha256

    tmp = mask_model.parent
    folds = {it["case_id"]: it["fold"] for it in load_manifest(tmp / "m.json", tmp / "data")}
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(out), "--masks",
                 str(tmp / "m.json"), "--root", str(tmp / "data"), "--mask-folds", "1", "--no-progress"]) == 0
    prov = json.loads((out / "case_0000" / "provenance.json").read_text())
    src = prov["mask_source"]
    assert src["fold"] == 1 == folds[src["case_id"]] and src["manifest_sha256"] == file_sha256(tmp / "m.json")
    assert prov["training_data"] == {"manifest": str(tmp / "m.json"), "manifest_sha256": file_sha256(tmp / "m.json"),
                                     "fold": None}
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(tmp_path / "x"),
                 "--mask-folds", "1", "--no-progress"]) == 2
    assert "--mask-folds needs --masks" in capsys.readouterr().err
