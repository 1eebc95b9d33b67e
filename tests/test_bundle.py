"""MONAI bundle export end to end on tiny runs: export -> metadata check -> `monai.bundle run` -> the
same cases as `medidiff generate`, for a base model and for a cascade."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import run as bundle_run
from monai.bundle import verify_metadata

import medidiff
from medidiff.bundle import METADATA_SCHEMA, METADATA_SCHEMA_URL, BundleGenerator
from medidiff.cli.main import main
from medidiff.config import load_config
from medidiff.errors import MedidiffError
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.files import file_sha256
from medidiff.training.diffusion import run_dir_of, train_diffusion

ROI = (16, 16, 16)
ROOT = Path(__file__).resolve().parents[1]


def _overrides(tmp: Path) -> list[str]:
    return [f"output_dir={tmp / 'runs'}", f"data.manifest={tmp / 'm.json'}", f"data.root={tmp / 'data'}",
            "data.fold=null", f"data.roi={list(ROI)}", "data.cache=memory", "data.label_mode=regions",
            "conditioning.generate_labels=true", "net.channels=[16, 32]", "net.num_res_blocks=1", "net.norm_groups=8",
            "objective.type=flow", "sampler.name=euler", "sampler.num_steps=3", "train.max_steps=2",
            "train.micro_batch=2", "train.precision=fp32", "train.device=cpu", "train.ckpt_every=2",
            "train.log_every=1", "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A base run on the 16^3 grid, and a cascade: a base run on 8^3 + an SR run (x2) on 16^3."""
    from medidiff.cascade.sr_task import train_sr

    tmp = tmp_path_factory.mktemp("bundle")
    write_phantom_dataset(tmp / "data", 4, shape=(32, 32, 24), seed=0, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    base = load_config(None, ["name=base", *_overrides(tmp)])
    low = load_config(None, ["name=low", "data.downsample=2", *_overrides(tmp)])
    sr = load_config(None, ["name=sr", "stage=sr", "cascade.patch_size=[16, 16, 16]", "cascade.scale=2",
                            *_overrides(tmp), "sampler.num_steps=2"])
    train_diffusion(base, progress=False)
    train_diffusion(low, progress=False)
    train_sr(sr, progress=False)
    return {"tmp": tmp, "base": run_dir_of(base), "low": run_dir_of(low), "sr": run_dir_of(sr)}


@pytest.fixture(scope="module")
def bundle(runs) -> Path:
    out = runs["tmp"] / "bundles" / "base"
    assert main(["export", str(runs["base"]), "-o", str(out), "--format", "monai-bundle", "--authors", "A. Tester",
                 "--copyright", "(c) test"]) == 0
    return out


@pytest.fixture(scope="module")
def cascade_bundle(runs) -> Path:
    out = runs["tmp"] / "bundles" / "cascade"
    assert main(["export", str(runs["low"]), "--sr-run", str(runs["sr"]), "-o", str(out),
                 "--format", "monai-bundle"]) == 0
    return out


def _no_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the network was reached")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _run(bundle: Path, **override) -> None:
    """`monai.bundle run` in this process (what `python -m monai.bundle run` calls, minus fire)."""
    bundle_run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle),
               **{"progress": False, **override})


def _same_cases(a: Path, b: Path) -> None:
    """Two generate outputs hold the same files with the same voxels, affines and provenance."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != ".medidiff.lock")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != ".medidiff.lock")
    assert files
    for rel in files:
        if rel.name.endswith(".nii.gz"):
            x, y = nib.load(a / rel), nib.load(b / rel)
            assert np.array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj)), rel
            assert np.array_equal(x.affine, y.affine) and x.header["descrip"] == y.header["descrip"], rel
        elif rel.suffix == ".json":
            assert json.loads((a / rel).read_text()) == json.loads((b / rel).read_text()), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_bundle_layout_holds_medidiff_model_folders_and_no_pickle(bundle, runs, tmp_path):
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"configs/metadata.json", "configs/inference.json", "configs/logging.conf", "configs/metadata_schema.json",
            "docs/README.md", "docs/license.txt", "models/base/config.json", "models/base/model.safetensors"} <= names
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")) for n in names)
    # a weights file is safetensors: an 8-byte header length, then a JSON header; a pickle starts 0x80
    for n in names:
        if n.endswith(".safetensors"):
            raw = (bundle / n).read_bytes()
            json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    # models/base is what `medidiff export` writes for the same run, byte for byte
    assert main(["export", str(runs["base"]), "-o", str(tmp_path / "model")]) == 0
    assert file_sha256(tmp_path / "model" / "model.safetensors") == file_sha256(bundle / "models/base/model.safetensors")
    assert (tmp_path / "model" / "config.json").read_text() == (bundle / "models/base/config.json").read_text()


def test_metadata_states_versions_formats_and_that_outputs_are_synthetic(bundle):
    import monai

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    jsonschema.validate(meta, METADATA_SCHEMA)
    assert meta["schema"] == METADATA_SCHEMA_URL
    assert (meta["monai_version"], meta["pytorch_version"], meta["numpy_version"]) == (
        monai.__version__, torch.__version__, np.__version__)
    assert meta["required_packages_version"]["medidiff"] == medidiff.__version__
    assert {"nibabel", "safetensors"} <= set(meta["required_packages_version"])
    assert "optional_packages_version" not in meta  # MONAI 1.6 would rename it over required_packages_version
    assert meta["authors"] == "A. Tester" and meta["copyright"] == "(c) test" and meta["synthetic"] is True
    assert "not for diagnostic" in meta["intended_use"].lower()
    model_cfg = json.loads((bundle / "models/base/config.json").read_text())
    assert model_cfg["training_data"]["manifest_sha256"] in meta["data_source"]
    fmt = meta["network_data_format"]
    image, label = fmt["outputs"]["image"], fmt["outputs"]["label"]
    assert image["num_channels"] == 4 and image["spatial_shape"] == list(ROI) and image["value_range"] == [0, 1]
    assert [d.split(":")[0] for d in image["channel_def"].values()] == ["t1n", "t1c", "t2w", "t2f"]
    assert label["num_channels"] == 1 and label["channel_def"] == {"0": "background", "1": "NCR/NETC",
                                                                   "2": "SNFH/ED", "3": "ET"}
    noise = fmt["inputs"]["noise"]  # wavelet latent: 8 sub-bands x (4 modalities + 3 regions), half the grid
    assert noise["num_channels"] == 56 and noise["spatial_shape"] == [8, 8, 8]
    assert "sr_data_format" not in meta and meta["medidiff"]["sr_model"] is None


def test_verify_metadata_passes_offline_and_catches_a_broken_file(bundle, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    schema = bundle / "configs" / "metadata_schema.json"
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    for broken in ({k: v for k, v in meta.items() if k != "authors"},
                   {**meta, "network_data_format": {"inputs": {}, "outputs": {
                       "image": {**meta["network_data_format"]["outputs"]["image"], "num_channels": "4"}}}}):
        (tmp_path / "m.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match="Failed validating"):
            verify_metadata(meta_file=str(tmp_path / "m.json"), filepath=str(schema))


def test_bundle_run_writes_what_medidiff_generate_writes(bundle, tmp_path, monkeypatch):
    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load called: weights must load from safetensors")

    monkeypatch.setattr(torch, "load", no_unpickling)
    _run(bundle, num_cases=2, seed=5, steps=2, output_dir=str(tmp_path / "bundle_out"))
    assert main(["generate", "--model", str(bundle / "models" / "base"), "--num", "2", "--seed", "5", "--steps", "2",
                 "--out", str(tmp_path / "generate_out"), "--no-progress"]) == 0
    _same_cases(tmp_path / "bundle_out", tmp_path / "generate_out")
    prov = json.loads((tmp_path / "bundle_out" / "case_0001" / "provenance.json").read_text())
    assert (prov["seed"], prov["steps"]) == (6, 2)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert prov["model_hash"] == meta["medidiff"]["base_model_hash"]
    assert nib.load(tmp_path / "bundle_out" / "case_0001" / "seg.nii.gz").shape == ROI
    # the defaults: the model's own steps (3), one case, under <bundle_root>/generated
    _run(bundle, output_dir=str(tmp_path / "defaults"))
    assert sorted(p.name for p in (tmp_path / "defaults").glob("case_*")) == ["case_0000"]
    assert json.loads((tmp_path / "defaults" / "case_0000" / "provenance.json").read_text())["steps"] == 3


def test_the_bundle_command_line_runs_generation(bundle, tmp_path):
    """`python -m monai.bundle run` from the bundle folder with the documented overrides (~8 s)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "cli_out"
    proc = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                           "--num_cases", "2", "--seed", "0", "--output_dir", str(out), "--steps", "2",
                           "--progress", "false"], cwd=bundle, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("case_*")) == ["case_0000", "case_0001"]
    prov = json.loads((out / "case_0001" / "provenance.json").read_text())
    assert (prov["seed"], prov["steps"], prov["generator"]) == (1, 2, "medidiff.DiffusionPipeline")
    assert "2 case(s) written" in proc.stdout


def _one_line_exit_2(capsys, call) -> str:
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("medidiff: error:")]
    assert len(err) == 1
    return err[0]


def test_bad_bundle_keys_are_one_line_errors_naming_the_key(bundle, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "num_cases must be an integer >= 1, got 0" in _one_line_exit_2(
        capsys, lambda: _run(bundle, num_cases=0, output_dir=out))
    assert "steps must be an integer >= 1, got 'many'" in _one_line_exit_2(
        capsys, lambda: _run(bundle, steps="many", output_dir=out))
    assert "sr_steps is for a cascade's SR stage" in _one_line_exit_2(
        capsys, lambda: _run(bundle, sr_steps=2, output_dir=out))
    assert "geometry must be 'native'" in _one_line_exit_2(
        capsys, lambda: _run(bundle, geometry="mni", output_dir=out))
    assert "progress must be true or false" in _one_line_exit_2(
        capsys, lambda: _run(bundle, progress="sometimes", output_dir=out))
    msg = _one_line_exit_2(capsys, lambda: bundle_run(config_file=str(bundle / "configs" / "inference.json"),
                                                      bundle_root=str(tmp_path), output_dir=out))
    assert "model_dir" in msg and "--bundle_root" in msg
    # what `medidiff generate` refuses, refused the same way
    (tmp_path / "p.txt").write_text("a glioma\n")
    assert "not text-conditioned" in _one_line_exit_2(
        capsys, lambda: _run(bundle, prompts=str(tmp_path / "p.txt"), output_dir=out))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("case_*"))


def test_generate_args_and_argv_map_onto_generate(tmp_path):
    gen = BundleGenerator(str(tmp_path), str(tmp_path / "o"), num_cases=3, seed=2, steps=4, geometry="brats",
                          overwrite="true", progress=False, generate_args=["--label-convention", "brats2021"])
    (tmp_path / "config.json").write_text("{}")
    assert gen.argv() == ["--model", str(tmp_path), "--out", str(tmp_path / "o"), "--num", "3", "--seed", "2",
                          "--batch", "1", "--device", "cpu", "--geometry", "brats", "--steps", "4", "--overwrite",
                          "--no-progress", "--label-convention", "brats2021"]
    with pytest.raises(MedidiffError, match="generate_args must be a list of strings"):
        BundleGenerator(str(tmp_path), "o", generate_args="--overwrite").argv()
    with pytest.raises(MedidiffError, match="generate_args must be a list of strings"):
        BundleGenerator(str(tmp_path), "o", generate_args=None).argv()


def test_export_refusals_are_one_line_and_keep_the_previous_bundle(bundle, runs, tmp_path, capsys, monkeypatch):
    def one_line(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        return err[0]

    out = str(tmp_path / "b")
    assert "--sr-run is for --format monai-bundle" in one_line(["export", str(runs["base"]), "-o", out,
                                                                  "--sr-run", str(runs["sr"])])
    assert "'medidiff.sr' run, not 'medidiff.diffusion'" in one_line(
        ["export", str(runs["sr"]), "-o", out, "--format", "monai-bundle"])
    # a base model on the SR grid does not chain with an x2 SR stage: refused at export, not at run time
    assert "do not chain" in one_line(["export", str(runs["base"]), "--sr-run", str(runs["sr"]), "-o", out,
                                       "--format", "monai-bundle"])
    assert not Path(out).exists()
    # the export replaces its folder whole: a folder of something else is refused, untouched
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert "not a medidiff bundle" in one_line(["export", str(runs["base"]), "-o", str(tmp_path / "mine"),
                                                "--format", "monai-bundle"])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # a failed export leaves the previous bundle as it was
    before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    import medidiff.bundle as bundle_module

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module, "inference_config", broken)
    with pytest.raises(OSError):
        main(["export", str(runs["base"]), "-o", str(bundle), "--format", "monai-bundle"])
    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".tmp_")]


def test_a_cascade_bundle_generates_through_both_stages(cascade_bundle, tmp_path):
    meta = json.loads((cascade_bundle / "configs" / "metadata.json").read_text())
    jsonschema.validate(meta, METADATA_SCHEMA)
    assert meta["medidiff"]["sr_model"] == "models/sr" and (cascade_bundle / "models/sr/model.safetensors").is_file()
    assert meta["network_data_format"]["outputs"]["image"]["spatial_shape"] == list(ROI)
    assert meta["network_data_format"]["inputs"]["noise"]["spatial_shape"] == [4, 4, 4]  # base: 8^3 grid, wavelet
    assert meta["sr_data_format"]["inputs"]["low_res"]["spatial_shape"] == [8, 8, 8]
    _run(cascade_bundle, num_cases=1, seed=1, steps=1, sr_steps=1, output_dir=str(tmp_path / "bundle_out"))
    assert main(["generate", "--model", str(cascade_bundle / "models/base"), "--sr-model",
                 str(cascade_bundle / "models/sr"), "--num", "1", "--seed", "1", "--steps", "1", "--sr-steps", "1",
                 "--out", str(tmp_path / "generate_out"), "--no-progress"]) == 0
    _same_cases(tmp_path / "bundle_out", tmp_path / "generate_out")
    prov = json.loads((tmp_path / "bundle_out" / "case_0000" / "provenance.json").read_text())
    assert (prov["generator"], prov["steps"], prov["sr_steps"]) == ("medidiff.CascadePipeline", 1, 1)
    assert (prov["model_hash"], prov["sr_model_hash"]) == (meta["medidiff"]["base_model_hash"],
                                                           meta["medidiff"]["sr_model_hash"])
    assert nib.load(tmp_path / "bundle_out" / "case_0000" / "t1n.nii.gz").shape == ROI


def test_a_mask_and_text_conditioned_bundle_takes_masks_prompts_and_an_encoder(runs, tmp_path):
    """The conditioned keys reach `medidiff generate`: the label of each case is its given mask,
    the prompt is recorded, and the text encoder (never in the bundle) is the one given."""
    from tests.conditioning.tiny_clip import write_tiny_clip

    tmp = runs["tmp"]
    clip = write_tiny_clip(tmp_path / "clip")
    cfg = load_config(None, ["name=cond", *_overrides(tmp), "conditioning.generate_labels=false",
                             "conditioning.mask=true", f"conditioning.text.encoder={clip}",
                             "conditioning.text.max_length=16", "net.attention_levels=[false, true]",
                             "net.head_dim=8"])
    train_diffusion(cfg, progress=False)
    bundle = tmp_path / "bundle"
    assert main(["export", str(run_dir_of(cfg)), "-o", str(bundle), "--format", "monai-bundle"]) == 0
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    jsonschema.validate(meta, METADATA_SCHEMA)
    inputs = meta["network_data_format"]["inputs"]
    assert inputs["mask"]["num_channels"] == 3 and inputs["mask"]["spatial_shape"] == list(ROI)
    assert inputs["prompt"].startswith("str") and meta["medidiff"]["text_encoder_required"] is True
    assert "label" in meta["network_data_format"]["outputs"]
    assert not (bundle / "models" / "base" / "text_encoder").exists()
    masks = tmp_path / "masks"
    masks.mkdir()
    label = np.zeros(ROI, np.uint8)
    label[4:10, 4:10, 4:10] = 2
    label[6:8, 6:8, 6:8] = 1
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(masks / "a.nii.gz"))
    (tmp_path / "prompts.txt").write_text("Tumour in the left hemisphere.\n")
    keys = {"masks": str(masks), "prompts": str(tmp_path / "prompts.txt"), "text_encoder": str(clip)}
    _run(bundle, num_cases=2, steps=1, output_dir=str(tmp_path / "bundle_out"), **keys)
    assert main(["generate", "--model", str(bundle / "models" / "base"), "--num", "2", "--steps", "1",
                 "--masks", keys["masks"], "--prompts", keys["prompts"], "--text-encoder", keys["text_encoder"],
                 "--out", str(tmp_path / "generate_out"), "--no-progress"]) == 0
    _same_cases(tmp_path / "bundle_out", tmp_path / "generate_out")
    case = tmp_path / "bundle_out" / "case_0001"
    np.testing.assert_array_equal(np.asarray(nib.load(case / "seg.nii.gz").dataobj), label)
    assert json.loads((case / "provenance.json").read_text())["prompt"] == "Tumour in the left hemisphere."
