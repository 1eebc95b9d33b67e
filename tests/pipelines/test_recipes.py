"""The recipes in pipelines/ run end to end with --smoke (tiny phantoms, 3 training steps, CPU).

Each recipe runs in this process (one DeepSpeed initialisation for the file) via its ``main(argv)``;
the checks are on what a user gets: NIfTI cases of the right shape with labels in {0..3},
model folders that load with ``from_pretrained``, masks honoured, reports written.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import nibabel as nib
import numpy as np
import pytest
import yaml

from medidiff.data.brats import MODALITIES
from medidiff.data.config import check_roi_divisible
from medidiff.data.manifest import build_brats_manifest, write_manifest
from medidiff.data.phantom import write_phantom_dataset
from medidiff.generation import DiffusionPipeline
from medidiff.training.diffusion import net_divisor

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
RECIPES = ["wavelet_flow", "mask_conditioned", "cascade_sr", "vae_ldm"]  # text_to_volume: own test (needs an encoder)


def recipe(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", PIPELINES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def check_cases(folder: Path, num: int, shape: tuple[int, ...], *, seg: bool) -> list[np.ndarray]:
    """Every case has 4 finite modalities in [0, 1] of ``shape`` (and a {0..3} seg); returns the segs."""
    cases = sorted(folder.glob("case_*"))
    assert len(cases) == num
    segs = []
    for case in cases:
        for m in MODALITIES:
            img = read(case / f"{m}.nii.gz")
            assert img.shape == shape and np.isfinite(img).all() and 0 <= img.min() and img.max() <= 1
        assert (case / "seg.nii.gz").is_file() == seg
        if seg:
            label = read(case / "seg.nii.gz")
            assert label.shape == shape and set(np.unique(label).tolist()) <= {0, 1, 2, 3}
            segs.append(label)
        assert json.loads((case / "provenance.json").read_text())["seed"] >= 0
    return segs


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    """A BraTS-layout folder and its manifest, shared by the recipes that take --data."""
    root = tmp_path_factory.mktemp("recipes") / "brats"
    write_phantom_dataset(root, 8, shape=(16, 16, 16), seed=0, progress=False)
    write_manifest(build_brats_manifest(root, num_folds=4), root / "manifest.json")
    return root


@pytest.mark.parametrize("name", RECIPES)
def test_full_size_configs_resolve_to_trainable_shapes(name, tmp_path, capsys):
    from medidiff.config import from_dict
    from medidiff.experiment import ExperimentConfig

    assert recipe(name).main(["--out", str(tmp_path), "--dry-run"]) == 0
    configs = [from_dict(ExperimentConfig, c) for c in yaml.safe_load_all(capsys.readouterr().out) if c]
    assert all(c.output_dir == str(tmp_path / "runs") for c in configs)
    for cfg in configs:
        if cfg.stage == "diffusion" and cfg.latent.type == "wavelet":
            check_roi_divisible(cfg.data.roi, net_divisor(cfg), cfg.data.downsample)
    if name == "cascade_sr":  # the base generates exactly the SR stage's low-resolution grid
        base, sr = configs
        assert base.data.roi == sr.data.roi and base.data.downsample == sr.cascade.scale
        assert base.conditioning.generate_labels == sr.conditioning.generate_labels
    if name == "vae_ldm":  # the latent grid (roi / vae.downsample) divides by the UNet's downsampling
        vae, ldm = configs
        assert ldm.latent.path == str(tmp_path / "models" / vae.name)
        check_roi_divisible(ldm.data.roi, vae.vae.downsample * 2 ** (len(ldm.net.channels) - 1))


def test_wavelet_flow_from_a_manifest(phantoms, tmp_path):
    out = tmp_path / "wdm"
    argv = ["--data", str(phantoms / "manifest.json"), "--out", str(out), "--num", "2", "--smoke"]
    assert recipe("wavelet_flow").main(argv) == 0
    check_cases(out / "generated", 2, (16, 16, 16), seg=True)
    pipe = DiffusionPipeline.from_pretrained(out / "models" / "wavelet_flow")
    assert pipe.image_shape == (7, 16, 16, 16) and pipe.cfg.conditioning.generate_labels  # 4 modalities + WT/TC/ET
    assert not (out / "phantoms").exists()  # the given manifest was used


def test_mask_conditioned_generates_from_training_fold_maps_and_scores_fidelity(phantoms, tmp_path):
    import hashlib

    from medidiff.config import load_config
    from medidiff.data.manifest import label_map_of, load_manifest, read_manifest
    from medidiff.data.masks import write_model_grid_masks

    out = tmp_path / "mask"
    assert recipe("mask_conditioned").main(["--data", str(phantoms), "--out", str(out), "--smoke"]) == 0
    cfg = load_config(out / "mask_flow.yaml")
    items = load_manifest(cfg.data.manifest, cfg.data.root or None)
    by_hash = {hashlib.sha256(it["case_id"].encode()).hexdigest()[:16]: it for it in items}
    expected = tmp_path / "expected"  # the training folds' label maps on the model grid
    write_model_grid_masks([it for it in items if it["fold"] != cfg.data.fold], cfg.data, expected,
                           label_map=label_map_of(read_manifest(cfg.data.manifest)))
    segs = check_cases(out / "generated", 4, (16, 16, 16), seg=True)
    for i, seg in enumerate(segs):
        src = json.loads((out / "generated" / f"case_{i:04d}" / "provenance.json").read_text())["mask"]
        case = by_hash[src["case_id_sha256"]]
        assert case["fold"] != cfg.data.fold and src["fold"] == case["fold"]  # never a held-out map
        np.testing.assert_array_equal(read(expected / f"{case['case_id']}.nii.gz"), seg)  # conditioned on it
    assert DiffusionPipeline.from_pretrained(out / "models" / "mask_flow").cfg.conditioning.mask
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["results"]) == {"fidelity", "utility"}
    dice = report["results"]["fidelity"]["aggregate"]["WT"]["dice_mean"]
    assert 0.0 <= dice <= 1.0


def test_cascade_sr_generates_on_the_full_grid(tmp_path):
    from medidiff.cascade.pipeline import CascadePipeline

    out = tmp_path / "cascade"
    assert recipe("cascade_sr").main(["--out", str(out), "--num", "2", "--smoke"]) == 0
    assert len(list((out / "phantoms").glob("BraTS-GLI-*"))) == 8  # no --data: phantoms
    check_cases(out / "generated", 2, (32, 32, 32), seg=True)
    pipe = CascadePipeline.from_pretrained(out / "models" / "cascade_base", out / "models" / "cascade_sr")
    assert pipe.base.image_shape[1:] == (16, 16, 16) and pipe.image_shape[1:] == (32, 32, 32)
    prov = json.loads((out / "generated" / "case_0001" / "provenance.json").read_text())
    assert prov["generator"] == "medidiff.CascadePipeline" and prov["seed"] == 1


def test_vae_ldm_trains_the_codec_then_diffusion_on_its_latents(tmp_path):
    from medidiff.latents import load_codec

    out = tmp_path / "ldm"
    assert recipe("vae_ldm").main(["--out", str(out), "--num", "2", "--smoke", "--evaluate"]) == 0
    check_cases(out / "generated", 2, (16, 16, 16), seg=False)
    vae = load_codec(out / "models" / "vae")
    assert vae.config.mean is not None and vae.in_channels == 4  # latent statistics fitted at export
    pipe = DiffusionPipeline.from_pretrained(out / "models" / "vae_ldm")
    assert pipe.cfg.latent.type == "pretrained" and type(pipe.codec) is type(vae)
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["results"]) == {"image", "realism", "memorisation"}


def test_a_recipe_runs_as_a_script_from_any_folder(tmp_path):
    import subprocess
    import sys

    # configs are found next to the script, not in the working folder (one recipe: each start costs ~15 s)
    done = subprocess.run([sys.executable, str(PIPELINES / "cascade_sr.py"), "--out", "o", "--dry-run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"output_dir: {tmp_path / 'o' / 'runs'}") == 2


def test_text_to_volume_trains_on_built_prompts_and_generates_from_prompts(tmp_path):
    from tests.conditioning.tiny_clip import write_tiny_clip

    out = tmp_path / "text"
    clip = write_tiny_clip(tmp_path / "clip")
    argv = ["--out", str(out), "--text-encoder", str(clip), "--prompt", "Tumour in the left hemisphere.",
            "--num", "2", "--smoke"]
    assert recipe("text_to_volume").main(argv) == 0
    check_cases(out / "generated", 2, (16, 16, 16), seg=True)
    manifest = json.loads((out / "manifest_text.json").read_text())
    assert all(item["text"].startswith("Brain MRI") for item in manifest["training"])
    prov = json.loads((out / "generated" / "case_0001" / "provenance.json").read_text())
    assert prov["prompt"] == "Tumour in the left hemisphere."
