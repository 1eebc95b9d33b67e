"""Diffusion stage end to end on tiny phantoms: train -> export -> from_pretrained -> generate."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medidiff.cli.main import main
from medidiff.config import ConfigError, load_config
from medidiff.data.brats import BRATS_AFFINE, BRATS_SHAPE
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.generation import DiffusionPipeline, export_run, regions_to_labels
from medidiff.io import read_provenance
from medidiff.nets.config import NetConfig
from medidiff.samplers import SamplerConfig
from medidiff.training import checkpoint as ckpt
from medidiff.training.diffusion import build_codec_for, resolve_net_config, run_dir_of, train_diffusion
from tests.test_viz import read_png

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
    img = read_png(previews[0])  # a valid PNG; every panel >= 240 px a side (16^3 sample at zoom 15)
    assert img.shape[0] >= 4 * 240 and img.shape[1] >= 3 * 240


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
    # the brain's default scale is not recorded (folders written before the key still resume); another scale is
    assert "intensity_scale" not in prov
    pipe = DiffusionPipeline.from_pretrained(model)
    pipe.cfg = dataclasses.replace(pipe.cfg, data=dataclasses.replace(pipe.cfg.data, percentile_region="outside_tumour",
                                                                      percentile_top=0.0))
    assert pipe.provenance(0, pipe.cfg.sampler)["intensity_scale"] == {
        "percentiles": [0.5, 99.5], "percentile_region": "outside_tumour", "percentile_top": 0.0}
    img = read_png(case / "preview.png")
    assert img.shape[0] >= 4 * 240 and img.shape[1] >= 3 * 240
    before = (case / "t1n.nii.gz").stat().st_mtime_ns
    assert main(args) == 0  # re-run: nothing to do
    assert (case / "t1n.nii.gz").stat().st_mtime_ns == before


def test_generate_writes_the_same_cases_on_writer_threads_as_on_one(trained, tmp_path, monkeypatch):
    """Cases are written on writer threads beside the next batch's sampling (BatchWriter): the same files,
    provenance and count as one thread writing each batch after it is sampled."""
    import medidiff.utils.threads as threads

    _, model = trained
    base = ["generate", "--model", str(model), "--num", "3", "--batch", "2", "--steps", "2", "--no-progress"]
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)  # writer threads even on a one-core machine
    assert main([*base, "--out", str(tmp_path / "threads")]) == 0
    monkeypatch.setattr(threads, "WRITER_THREADS", 1)
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "threads") for p in (tmp_path / "threads").rglob("*")
                           if p.is_file())
    assert sum(f.name == "provenance.json" for f in files) == 3
    for f in (f for f in files if f.name.endswith(".nii.gz")):
        a, b = (nib.load(tmp_path / side / f) for side in ("one", "threads"))
        assert np.array_equal(a.get_fdata(), b.get_fdata()) and (a.affine == b.affine).all()
        assert read_provenance(tmp_path / "one" / f) == read_provenance(tmp_path / "threads" / f)


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


def test_masks_can_be_a_generate_folder_and_record_the_model_that_drew_them(trained, mask_model, tmp_path):
    """The two-stage recipe in two commands: `generate --masks` reads the seg.nii.gz of a folder `generate`
    wrote, each case's label map in case order. Labels a joint model drew record that model (hash and training
    data) instead of a file name, so evaluate checks its folds too; labels that were a mask-conditioned case's
    own conditioning mask keep that mask's record (a held-out case's labels must not pass through unnamed)."""
    _, joint = trained
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["generate", "--model", str(joint), "--num", "2", "--out", str(first), "--no-progress"]) == 0
    shared = ["generate", "--model", str(mask_model), "--num", "2", "--out", str(second), "--masks", str(first),
              "--no-progress"]
    assert main(shared) == 2 and not second.exists()  # seeds 0, 1 drew those labels: the same starting noise
    assert main([*shared, "--dry-run"]) == 2 and not second.exists()  # the request check says it too
    assert main([*shared, "--seed", "2"]) == 0
    for i in range(2):
        case = f"case_{i:04d}"
        np.testing.assert_array_equal(np.asarray(nib.load(second / case / "seg.nii.gz").dataobj),
                                      np.asarray(nib.load(first / case / "seg.nii.gz").dataobj))
        stage1 = json.loads((first / case / "provenance.json").read_text())
        mask = json.loads((second / case / "provenance.json").read_text())["mask"]
        assert mask["generated_case"] == case and mask["model_hash"] == stage1["model_hash"]
        assert mask["training_data"] == stage1["training_data"] and "file_stem_sha256" not in mask
        assert mask["seed"] == stage1["seed"] == i
    third = tmp_path / "third"  # the second stage's label maps are the first's: their record (model, seed) passes on
    again3 = ["generate", "--model", str(mask_model), "--num", "2", "--out", str(third), "--masks", str(second),
              "--no-progress"]
    assert main([*again3, "--seed", "1"]) == 2 and not third.exists()  # seed 1 drew case_0001's labels
    assert main([*again3, "--seed", "4"]) == 0
    inherited = json.loads((third / "case_0001" / "provenance.json").read_text())["mask"]
    stage1 = json.loads((first / "case_0001" / "provenance.json").read_text())
    assert inherited["via_generated_case"] == "case_0001" and inherited["generated_case"] == "case_0001"
    assert (inherited["model_hash"], inherited["seed"]) == (stage1["model_hash"], 1)
    assert inherited["training_data"] == stage1["training_data"]  # evaluate's fold check reaches the first model

    masks = tmp_path / "masks"
    masks.mkdir()
    label = np.zeros(SHAPE, np.uint8)
    label[4:10, 4:10, 4:10] = 2
    label[6:8, 6:8, 6:8] = 3  # ET
    _write_label(masks / "BraTS-GLI-00001-000.nii.gz", label)
    drawn, again = tmp_path / "drawn", tmp_path / "again"
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(drawn), "--masks", str(masks),
                 "--keep-source-ids", "--no-progress"]) == 0
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(again), "--masks", str(drawn),
                 "--no-progress"]) == 0
    source = json.loads((drawn / "case_0000" / "provenance.json").read_text())["mask"]
    assert "file" in source  # the first stage kept its ids (sidecar only) ...
    public = {k: v for k, v in source.items() if k != "file"}
    assert json.loads((again / "case_0000" / "provenance.json").read_text())["mask"] == {
        **public, "via_generated_case": "case_0000"}  # ... which the second stage's record does not carry
    header = nib.load(again / "case_0000" / "t1n.nii.gz").header
    assert "BraTS-GLI-00001-000" not in bytes(header.binaryblock).decode("latin-1")
    old21, masks21 = tmp_path / "old21", tmp_path / "masks21"  # a first stage in BraTS 2021's labels (ET = 4)
    masks21.mkdir()
    _write_label(masks21 / "a.nii.gz", np.where(label == 3, 4, label))
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(old21), "--masks", str(masks21),
                 "--label-convention", "brats2021", "--no-progress"]) == 0
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(tmp_path / "from21"), "--masks",
                 str(old21), "--no-progress"]) == 0
    rec = json.loads((tmp_path / "from21" / "case_0000" / "provenance.json").read_text())
    assert rec["label_convention"] == "brats2021" and rec["label_convention_from"].startswith("the first stage")
    seg21 = np.asarray(nib.load(old21 / "case_0000" / "seg.nii.gz").dataobj)
    assert 4 in seg21 and 3 not in seg21
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "from21" / "case_0000" / "seg.nii.gz").dataobj), seg21)
    (drawn / "case_0000" / "provenance.json").unlink()  # an unfinished first-stage case: its origin is unknown
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(tmp_path / "x"), "--masks",
                 str(drawn), "--no-progress"]) == 2


def test_first_stage_runs_the_two_stage_recipe_in_one_command(trained, mask_model, tmp_path, capsys):
    """`generate --model SECOND --first-stage FIRST`: the first model's cases go to OUT/first_stage, their label
    maps condition the second, each second-stage case records the first model as its mask's origin (what
    evaluate's fold check reads), and the same command again finds every case done. A pairing that cannot work
    is refused before anything is written."""
    _, joint = trained
    out = tmp_path / "two"
    cmd = ["generate", "--model", str(mask_model), "--first-stage", str(joint), "--num", "2", "--out", str(out),
           "--no-progress"]
    assert main(cmd) == 0
    for i in range(2):
        case = f"case_{i:04d}"
        np.testing.assert_array_equal(np.asarray(nib.load(out / case / "seg.nii.gz").dataobj),
                                      np.asarray(nib.load(out / "first_stage" / case / "seg.nii.gz").dataobj))
        first = json.loads((out / "first_stage" / case / "provenance.json").read_text())
        second = json.loads((out / case / "provenance.json").read_text())
        mask = second["mask"]
        assert mask["generated_case"] == case and mask["model_hash"] == first["model_hash"]
        assert (first["seed"], second["seed"]) == (1_000_000 + i, i)  # each stage its own noise
    capsys.readouterr()
    assert main(cmd) == 0
    assert capsys.readouterr().out.count("2 already there") == 2  # both stages resume, nothing redrawn
    legacy = tmp_path / "legacy"  # the user's label convention reaches the first stage's seg files too
    assert main([*cmd[:-2], str(legacy), "--label-convention", "brats2021", "--no-progress"]) == 0
    for folder in (legacy / "first_stage" / "case_0000", legacy / "case_0000"):
        assert json.loads((folder / "provenance.json").read_text())["label_convention"] == "brats2021"
    dry = tmp_path / "dry"  # --dry-run says what the first stage would run, and writes nothing
    assert main([*cmd[:-3], "--out", str(dry), "--seed", "7", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "first_stage_run:" in said and "seed: 1000007" in said and str(dry / "first_stage") in said
    assert not dry.exists()
    for bad, why in ((["--model", str(mask_model), "--first-stage", str(mask_model)],
                      f"--first-stage {mask_model}: draws no label maps"),
                     (["--model", str(joint), "--first-stage", str(joint)], f"--model {joint}: is not mask-conditioned"),
                     (["--model", str(mask_model), "--first-stage", str(tmp_path / "nothing")], "not a medidiff model"),
                     (["--model", str(mask_model), "--first-stage", str(joint), "--sr-model", str(joint)], "--sr-model"),
                     (["--model", str(mask_model), "--first-stage", str(joint), "--masks", str(out)], "not both")):
        target = tmp_path / "refused"
        assert main(["generate", *bad, "--num", "1", "--out", str(target), "--no-progress"]) == 2
        assert why in capsys.readouterr().err and not target.exists()


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
    mask = json.loads((out / "case_0000" / "provenance.json").read_text())["mask"]
    assert mask["fold"] == 0 and len(mask["case_id_sha256"]) == 16 and len(mask["manifest_sha256"]) == 16


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
    assert prov["geometry"] == "reference" and set(prov["reference"]) == {"case_id_sha256", "manifest_sha256", "fold"}


# ---- issue 21: samplers given at generation time meet the load-time checks ----------------------


def test_generate_refuses_a_sampler_of_the_other_objective(trained, tmp_path, capsys):
    _, model = trained  # a flow model
    pipe = DiffusionPipeline.from_pretrained(model)
    with pytest.raises(ConfigError, match=r"sampler.name.*\['euler', 'heun'\]"):
        pipe([0], sampler=SamplerConfig(name="ddpm", num_steps=3))
    args = ["generate", "--model", str(model), "--num", "1", "--out", str(tmp_path / "o"), "--sampler", "ddim"]
    for extra in ([], ["--dry-run"]):  # the run and its dry run refuse alike, before writing anything
        assert main(args + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "use sampler.name one of ['euler', 'heun']" in err
    assert not (tmp_path / "o").exists()
    assert main(["generate", "--model", str(model), "--num", "1", "--out", str(tmp_path / "o"), "--sampler", "heun",
                 "--dry-run"]) == 0


def test_generate_takes_eta_for_euler_and_refuses_it_for_heun(trained, tmp_path, capsys):
    """--eta: the flow model's Euler steps may add fresh noise; Heun has no such option (one line, exit 2)."""
    _, model = trained  # a flow model
    base = ["generate", "--model", str(model), "--num", "1", "--out", str(tmp_path / "o"), "--dry-run"]
    assert main(base + ["--sampler", "euler", "--eta", "1"]) == 0
    capsys.readouterr()
    for bad in (["--sampler", "heun", "--eta", "0.5"], ["--sampler", "euler", "--eta", "2"]):
        assert main(base + bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--eta" in err and "eta" in err.split(":", 2)[-1]
    assert main(base + ["--tail-steps", "1"]) == 0
    capsys.readouterr()
    assert main(base + ["--tail-steps", "-1"]) == 2
    assert "tail_steps must be in 0..8" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_generate_refuses_guidance_without_a_trained_unconditional_branch(mask_model, tmp_path, capsys):
    args = ["generate", "--model", str(mask_model), "--num", "1", "--out", str(tmp_path / "o"), "--guidance", "3"]
    for extra in (["--masks", str(tmp_path)], ["--dry-run"]):
        assert main(args + extra) == 2
        assert "objective.cond_drop_prob is 0" in capsys.readouterr().err


def test_an_old_export_loads_the_same_net(trained, tmp_path):
    """Model folders exported before time_scale's default became 1 record "net": {time_scale: 1.0}
    (what training built) and "config": {net: {time_scale: 1000.0}} (what the YAML defaulted to):
    they must load to the same net and the same samples."""
    _, model = trained
    old = tmp_path / "old_model"
    shutil.copytree(model, old)
    meta = json.loads((old / "config.json").read_text())
    assert meta["net"]["time_scale"] == 1.0
    meta["config"]["net"]["time_scale"] = 1000.0
    (old / "config.json").write_text(json.dumps(meta))
    new_pipe, old_pipe = DiffusionPipeline.from_pretrained(model), DiffusionPipeline.from_pretrained(old)
    assert old_pipe.net_cfg == new_pipe.net_cfg and old_pipe.net_cfg.time_scale == 1.0
    np.testing.assert_array_equal(old_pipe([5])[0].images, new_pipe([5])[0].images)


def test_time_scale_default_is_what_the_pipelines_build(trained):
    """A net built from NetConfig() directly embeds the network times the objectives pass the same
    way as the nets the training pipelines build (it used to multiply them by 1000 once more)."""
    run, _ = trained
    cfg = load_config(run / "resolved_config.yaml")
    built = resolve_net_config(cfg, build_codec_for(cfg))
    assert NetConfig().time_scale == built.time_scale == 1.0



def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_generate_refuses_an_out_folder_of_another_request(trained, tmp_path, capsys):
    _, model = trained
    out = tmp_path / "gen"
    base = ["generate", "--model", str(model), "--out", str(out), "--no-progress", "--steps", "2"]
    assert main([*base, "--num", "2"]) == 0
    capsys.readouterr()
    for extra, word in ((["--seed", "500"], "seed"), (["--sampler", "heun"], "sampler"),
                        (["--geometry", "brats"], "geometry"), (["--steps", "3"], "steps"),
                        (["--tail-steps", "1"], "tail_steps"), (["--eta", "0.5"], "eta")):
        assert main([*base, "--num", "2", *extra]) == 2, extra
        err = _one_line_error(capsys)
        assert "case_0000" in err and word in err and "--overwrite" in err, err
    # other steps: refused even for a shorter --num (case_0001 is left from the other request)
    assert main(["generate", "--model", str(model), "--out", str(out), "--no-progress", "--steps", "3",
                 "--num", "1"]) == 2
    assert "steps 2" in _one_line_error(capsys)
    # the other way round: cases made with a tail step are not taken as a default request's (it records no tail)
    tailed = ["generate", "--model", str(model), "--out", str(tmp_path / "tailed"), "--no-progress", "--steps", "2",
              "--num", "1"]
    assert main([*tailed, "--tail-steps", "1"]) == 0
    capsys.readouterr()
    assert main(tailed) == 2
    assert "tail_steps 1; this run: 0" in _one_line_error(capsys)
    assert main([*base, "--num", "2", "--seed", "500", "--overwrite"]) == 0
    for i in range(2):
        prov = json.loads((out / f"case_{i:04d}" / "provenance.json").read_text())
        assert prov["seed"] == 500 + i
        assert read_provenance(out / f"case_{i:04d}" / "t1n.nii.gz")["seed"] == 500 + i


def test_generate_redoes_an_interrupted_case_and_holds_a_lock(trained, tmp_path, capsys, monkeypatch):
    from medidiff.files import folder_lock

    _, model = trained
    out = tmp_path / "gen"
    args = ["generate", "--model", str(model), "--out", str(out), "--no-progress", "--steps", "2", "--num", "1"]
    with folder_lock(out, "--out"):
        assert main(args) == 2
        err = _one_line_error(capsys)
        assert "in use by pid" in err and str(out) in err
    # a case killed before its provenance (written last) is not "finished": it is redone
    import medidiff.viz

    def crash(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(medidiff.viz, "write_png", crash)
    with pytest.raises(RuntimeError):
        main(args)
    assert (out / "case_0000" / "t1n.nii.gz").is_file() and not (out / "case_0000" / "provenance.json").exists()
    monkeypatch.undo()
    assert main(args) == 0
    assert "1 case(s) written" in capsys.readouterr().out
    assert (out / "case_0000" / "provenance.json").is_file()
    assert not list(out.rglob(".tmp_*"))


def test_a_failed_export_keeps_the_previous_model_folder(trained, tmp_path, monkeypatch):
    import medidiff.generation as generation

    run, _ = trained
    model = export_run(run, tmp_path / "model")
    meta = json.loads((model / "config.json").read_text())
    assert meta["source_checkpoint"].startswith("step_")  # a name, not the trainer's absolute path
    before = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}

    def broken_copy(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(generation.shutil, "copytree", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        export_run(run, model)
    after = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    assert after == before and (model / "codec" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left


@pytest.mark.parametrize("shape", [(16, 16, 16), (17, 15, 16), (64, 64, 48)])
def test_brats_geometry_copies_a_1mm_grid_voxel_for_voxel(shape):
    """155 is odd and the model grids even: centring alone put every output slice between two
    generated ones (averaged images, labels 0.5 mm off). A 1 mm grid must land exactly."""
    from medidiff.generation import brats_placement, place_in_grid

    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, size=shape).astype(np.uint8)
    image = rng.uniform(0.1, 1.0, size=shape).astype(np.float32)
    out_label, affine = place_in_grid(label, (1.0, 1.0, 1.0), "brats", label=True)
    out_image, _ = place_in_grid(image, (1.0, 1.0, 1.0), "brats")
    np.testing.assert_allclose(affine, BRATS_AFFINE)
    # where each generated voxel landed, read through the two affines (all integer BraTS indices)
    src = brats_placement(shape, (1.0, 1.0, 1.0))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    idx = (np.linalg.solve(BRATS_AFFINE, src) @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-9)
    at = tuple(np.round(idx).astype(int).T)
    np.testing.assert_array_equal(out_label[at], label.reshape(-1))  # the label map round-trips exactly
    np.testing.assert_allclose(out_image[at], image.reshape(-1), atol=1e-6)  # no averaging across slices
    assert np.count_nonzero(out_label) == np.count_nonzero(label)  # nothing duplicated outside
    centre = np.array(BRATS_SHAPE) // 2
    assert np.all(np.abs(np.mean(np.array(at), axis=1) - centre) <= 1)  # still centred


def test_seg_follows_the_training_label_convention_with_a_legend(trained, tmp_path):
    _, model = trained
    base = ["generate", "--model", str(model), "--num", "1", "--steps", "2", "--no-progress", "--seed", "3"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--label-convention", "brats2021"]) == 0
    img = nib.load(tmp_path / "a" / "case_0000" / "seg.nii.gz")
    assert img.header.get_intent()[0] == "label"  # viewers show a lookup table
    seg23 = np.asarray(img.dataobj)
    seg21 = np.asarray(nib.load(tmp_path / "b" / "case_0000" / "seg.nii.gz").dataobj)
    assert set(np.unique(seg23)) <= {0, 1, 2, 3} and set(np.unique(seg21)) <= {0, 1, 2, 4}
    np.testing.assert_array_equal(seg21, np.where(seg23 == 3, 4, seg23))
    prov = json.loads((tmp_path / "a" / "case_0000" / "provenance.json").read_text())
    # the phantom training manifest is 2023-style (no label_map): recorded at export
    assert prov["label_convention"] == "brats2023" and prov["label_convention_from"] == "training data"
    assert prov["labels"] == {"0": "background", "1": "NCR/NETC", "2": "SNFH/ED", "3": "ET"}
    prov21 = json.loads((tmp_path / "b" / "case_0000" / "provenance.json").read_text())
    assert prov21["labels"]["4"] == "ET" and "3" not in prov21["labels"]
    # the evaluation reads a 2021-convention folder back into medidiff's labels

    from medidiff.data.transforms import LABEL, build_transforms
    from medidiff.eval.data import synthetic_items

    data = dataclasses.replace(DiffusionPipeline.from_pretrained(model).cfg.data, label_mode="labels", cache="none",
                               roi=SHAPE)
    for folder in ("a", "b"):
        (item,) = synthetic_items(tmp_path / folder, data.modalities)
        item.pop("provenance")
        assert set(np.unique(build_transforms(data, train=False)(item)[LABEL].numpy())) <= {0, 1, 2, 3}


def test_export_never_replaces_a_folder_that_is_not_a_model(trained, tmp_path, capsys):
    # -o is replaced as a whole: a user's folder of other files must survive a mistyped -o
    run, _ = trained
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", str(run), "-o", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a medidiff model" in err[0] and str(mine) in err[0]
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (mine / "config.json").write_text('{"kind": "webapp"}')  # another tool's config with a "kind"
    assert main(["export", str(run), "-o", str(mine)]) == 2
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "notes.txt"]
    # an empty folder, or a model folder (re-export), is fine
    (tmp_path / "empty").mkdir()
    assert main(["export", str(run), "-o", str(tmp_path / "empty")]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "model.safetensors").is_file()


def test_export_records_the_training_label_convention(tmp_path):
    from medidiff.generation import training_label_convention

    for label_map, expected in (({"4": 3}, "brats2021"), ({}, "brats2023")):
        m = tmp_path / f"m{len(label_map)}.json"
        m.write_text(json.dumps({"medidiff": {"label_map": label_map}, "training": []}))
        assert training_label_convention({"data": {"manifest": str(m)}}) == expected
    assert training_label_convention({"data": {"manifest": str(tmp_path / "gone.json")}}) is None


def test_mask_label_maps_are_read_in_their_convention(tmp_path):
    from medidiff.cli.generate_cmd import load_masks
    from medidiff.errors import DataError

    label = np.zeros(SHAPE, np.uint8)
    label[2:6, 2:6, 2:6] = 2
    label[3, 3, 3] = 4  # 2021's enhancing tumour
    _write_label(tmp_path / "a.nii.gz", label)
    with pytest.raises(DataError, match="--label-convention brats2021"):
        load_masks(str(tmp_path), SHAPE)
    masks, _ = load_masks(str(tmp_path), SHAPE, convention="brats2021")
    assert masks[0, 2].sum() == 1 and masks[0, 2, 3, 3, 3] == 1  # ET
    label[4, 4, 4] = 3  # 3 and 4 together: BraTS 2024 post-treatment (4 = resection cavity)
    _write_label(tmp_path / "a.nii.gz", label)
    with pytest.raises(DataError, match="2024 post-treatment"):
        load_masks(str(tmp_path), SHAPE)
    with pytest.raises(DataError, match="2021"):
        load_masks(str(tmp_path), SHAPE, convention="brats2021")  # 3 cannot be 2021 data


def _strings_of(case: Path) -> str:
    """Every byte a user receives for a case: NIfTI headers (decompressed) and every JSON."""
    import gzip

    return "\n".join([gzip.decompress(p.read_bytes())[:100_000].decode("latin-1") for p in case.glob("*.nii.gz")]
                     + [p.read_text() for p in case.glob("*.json")])


def test_synthetic_outputs_carry_no_source_ids_unless_asked(mask_model, tmp_path, capsys):
    tmp = mask_model.parent
    args = ["generate", "--model", str(mask_model), "--num", "1", "--masks", str(tmp / "m.json"),
            "--root", str(tmp / "data"), "--reference", str(tmp / "m.json"), "--reference-case",
            "BraTS-GLI-00001-000", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    text = _strings_of(tmp_path / "a" / "case_0000")
    for secret in ("BraTS-GLI-00000-000", "BraTS-GLI-00001-000", str(tmp), "m.json"):
        assert secret not in text, secret
    assert main([*args, "--out", str(tmp_path / "b"), "--keep-source-ids"]) == 0
    case = tmp_path / "b" / "case_0000"
    prov = json.loads((case / "provenance.json").read_text())
    assert prov["mask"]["case_id"] == "BraTS-GLI-00000-000" and prov["reference"]["case_id"] == "BraTS-GLI-00001-000"
    assert json.loads((case / "t1n.json").read_text())["mask"]["case_id"] == "BraTS-GLI-00000-000"
    header = gzip_header_text(case / "t1n.nii.gz")
    assert "BraTS-GLI-0000" not in header and str(tmp) not in header  # headers never carry them
    assert read_provenance(case / "t1n.nii.gz")["mask"]["case_id_sha256"] == prov["mask"]["case_id_sha256"]
    assert prov["reference"]["case_id_sha256"] == json.loads(
        (tmp_path / "a" / "case_0000" / "provenance.json").read_text())["reference"]["case_id_sha256"]
    # the same request again is a match (with or without the plain ids): nothing to do
    assert main([*args, "--out", str(tmp_path / "b"), "--keep-source-ids"]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "0 case(s) written" in capsys.readouterr().out


def gzip_header_text(path: Path) -> str:
    import gzip

    return gzip.decompress(path.read_bytes())[:100_000].decode("latin-1")


def test_masks_come_from_named_folds_and_record_their_source(mask_model, tmp_path, capsys):
    from medidiff.data.manifest import load_manifest
    import hashlib

    from medidiff.data.mask_sources import file_sha256

    tmp = mask_model.parent
    folds = {it["case_id"]: it["fold"] for it in load_manifest(tmp / "m.json", tmp / "data")}
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(out), "--masks",
                 str(tmp / "m.json"), "--root", str(tmp / "data"), "--mask-folds", "1", "--no-progress"]) == 0
    prov = json.loads((out / "case_0000" / "provenance.json").read_text())
    src, sha = prov["mask"], file_sha256(tmp / "m.json")[:16]
    by_hash = {hashlib.sha256(cid.encode()).hexdigest()[:16]: f for cid, f in folds.items()}
    assert src["fold"] == 1 == by_hash[src["case_id_sha256"]] and src["manifest_sha256"] == sha
    assert prov["training_data"] == {"manifest_sha256": sha, "fold": None}  # no path: it may name a site
    assert main(["generate", "--model", str(mask_model), "--num", "1", "--out", str(tmp_path / "x"),
                 "--mask-folds", "1", "--no-progress"]) == 2
    assert "--mask-folds needs --masks" in capsys.readouterr().err


def test_provenance_states_what_export_recorded_the_model_trained_on(mask_model, tmp_path):
    """generate copies the model folder's training_data (written at export, while the training
    manifest was at hand) instead of hashing whatever file sits at data.manifest later."""
    from medidiff.data.mask_sources import file_sha256

    tmp = mask_model.parent
    meta = json.loads((mask_model / "config.json").read_text())
    assert meta["training_data"] == {"manifest_sha256": file_sha256(tmp / "m.json")[:16], "fold": None}
    moved = tmp_path / "model"
    shutil.copytree(mask_model, moved)
    meta["training_data"] = {"manifest_sha256": "ab" * 8, "fold": 1}  # as if the manifest changed since
    (moved / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(moved), "--num", "1", "--out", str(out), "--masks", str(tmp / "m.json"),
                 "--root", str(tmp / "data"), "--mask-folds", "0", "--no-progress"]) == 0
    prov = json.loads((out / "case_0000" / "provenance.json").read_text())
    assert prov["training_data"] == {"manifest_sha256": "ab" * 8, "fold": 1}


def test_pixel_space_trains_exports_and_generates_on_the_image_grid(tmp_path, capsys):
    # latent.levels 0 (issue 16's wavelet-vs-pixel row): the net works on the images' own channels at full
    # resolution; a detail weight has no sub-band to weigh there and is refused with the reason. A skip per image
    # channel works there, and generate spreads it over the channels as training did (it needs the codec's names)
    write_phantom_dataset(tmp_path / "data", 2, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp_path / "data", num_folds=2), tmp_path / "m.json")
    sets = ["name=pix", f"output_dir={tmp_path / 'runs'}", f"data.manifest={tmp_path / 'm.json'}",
            f"data.root={tmp_path / 'data'}", "data.fold=null", f"data.roi={list(SHAPE)}", "data.cache=memory",
            "data.label_mode=regions", "conditioning.generate_labels=true", "latent.levels=0",
            "latent.fit_stats=false", "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8",
            "objective.type=flow", "objective.flow_target=x0", "sampler.name=euler", "sampler.num_steps=2",
            "objective.x0_skip_sigma=0.05", "objective.x0_skip_sigmas={t1n: 0.025, WT: 0.0}",
            "train.max_steps=2", "train.micro_batch=1", "train.precision=fp32", "train.device=cpu",
            "train.log_every=1", "train.warmup_steps=1"]
    cfg = load_config(None, sets)
    codec = build_codec_for(cfg)
    assert codec.latent_shape((7, *SHAPE)) == (7, *SHAPE)
    assert resolve_net_config(cfg, codec).in_channels == 7  # 4 images + WT/TC/ET, no sub-bands
    assert train_diffusion(cfg, progress=False).final_step == 2
    model = export_run(run_dir_of(cfg), tmp_path / "model")
    out = tmp_path / "gen"
    assert main(["generate", "--model", str(model), "--num", "1", "--out", str(out), "--no-progress"]) == 0
    assert nib.load(out / "case_0000" / "t1n.nii.gz").shape == SHAPE
    assert DiffusionPipeline.from_pretrained(model).objective.skip_sigmas == (0.025, 0.05, 0.05, 0.05, 0.0, 0.05, 0.05)
    refused = load_config(None, [*sets, "name=pix_detail", "objective.detail_weight=100"])
    with pytest.raises(Exception, match="not named by sub-band"):
        train_diffusion(refused, progress=False)


def test_the_held_out_fold_is_built_only_for_held_out_losses(tmp_path):
    """train.val_every 0 (no held-out losses, the default and configs/anatomy_2mm.yaml): the held-out fold is
    neither trained on nor built (with data.cache memory, built is decoded: 10 s of 372 anatomy cases)."""
    from medidiff.training.diffusion import build_datasets

    write_phantom_dataset(tmp_path / "data", 4, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp_path / "data", num_folds=2), tmp_path / "m.json")
    base = [f"data.manifest={tmp_path / 'm.json'}", f"data.root={tmp_path / 'data'}", "data.fold=0",
            f"data.roi={list(SHAPE)}", "data.cache=none", "net.channels=[16, 32]", "net.norm_groups=8"]
    sizes = {}
    for every in (0, 5):
        train, val = build_datasets(load_config(None, [*base, f"train.val_every={every}"]), tmp_path / "run")
        sizes[every] = (len(train), None if val is None else len(val))
    assert sizes[0] == (2, None) and sizes[5] == (2, 2)


def test_an_image_only_model_loads_no_labels(tmp_path):
    # At 128^3 the three float32 region channels were 3x a one-modality image's bytes, stacked, pinned
    # and copied every step for a model that never reads them.
    from medidiff.training.diffusion import build_datasets, uses_labels

    write_phantom_dataset(tmp_path / "data", 2, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp_path / "data", num_folds=2), tmp_path / "m.json")
    base = [f"data.manifest={tmp_path / 'm.json'}", f"data.root={tmp_path / 'data'}", "data.fold=null",
            f"data.roi={list(SHAPE)}", "data.cache=none", "data.label_mode=regions", "net.channels=[16, 32]",
            "net.norm_groups=8"]
    for extra, wanted in ((["conditioning.generate_labels=false"], False),
                          (["conditioning.generate_labels=true"], True),
                          (["conditioning.generate_labels=false", "conditioning.mask=true"], True)):
        cfg = load_config(None, [*base, *extra])
        assert uses_labels(cfg) is wanted
        train, _ = build_datasets(cfg, tmp_path / "run", with_label=uses_labels(cfg))
        assert ("label" in train[0]) is wanted
