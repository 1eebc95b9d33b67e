"""Prompts from label maps: hemisphere, lobe, volumes, 'no tumour'; manifest text fields."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medidiff.conditioning.prompts import (
    CaseFacts,
    add_prompts_to_manifest,
    build_prompt,
    describe_case,
    lobe_of,
    prompts_for_manifest,
)
from medidiff.data.manifest import build_brats_manifest, load_manifest, read_manifest, write_manifest
from medidiff.data.phantom import case_seed, make_phantom_case, write_phantom_dataset
from medidiff.errors import DataError


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> tuple[Path, Path, dict]:
    """8 phantom cases on disk (some tumour-free), their manifest and the generator's ground truth."""
    tmp = tmp_path_factory.mktemp("prompts")
    write_phantom_dataset(tmp / "data", 8, shape=(32, 32, 24), seed=3, tumour_fraction=0.6, progress=False)
    write_manifest(build_brats_manifest(tmp / "data", num_folds=2), tmp / "m.json")
    truth = {c["id"]: c for c in json.loads((tmp / "data" / "phantom.json").read_text())["case_list"]}
    return tmp / "m.json", tmp / "data", truth


def test_manifest_prompts_state_the_phantom_ground_truth(phantoms):
    manifest, root, truth = phantoms
    prompts = prompts_for_manifest(manifest, root)
    assert set(prompts) == set(truth)
    kinds = {c["has_tumour"] for c in truth.values()}
    assert kinds == {True, False}, "the fixture must hold tumour and tumour-free cases"
    for cid, case in truth.items():
        p = prompts[cid]
        assert p.startswith("Brain MRI (T1, T1 post-contrast, T2, FLAIR).")
        if case["has_tumour"]:
            assert f"Tumour in the {case['hemisphere']} " in p, (cid, p)
            assert "No tumour" not in p
        else:
            assert p.endswith("No tumour.") and "hemisphere" not in p


def test_volumes_match_label_counts_and_voxel_size(phantoms):
    import nibabel as nib

    manifest, root, truth = phantoms
    for item in load_manifest(manifest, root):
        img = nib.load(item["label"])
        seg = np.asarray(img.dataobj)
        facts = describe_case(seg, img.affine, brain_mask=np.asarray(nib.load(item["image"][0]).dataobj) > 0)
        for value, key in ((1, "NCR"), (2, "ED"), (3, "ET")):
            assert facts.volumes_ml[key] == pytest.approx((seg == value).sum() / 1000.0)  # 1 mm voxels
        if truth[item["case_id"]]["has_tumour"]:
            names = dict(zip(("NCR/NETC", "SNFH/ED", "ET"), ("NCR", "ED", "ET")))  # the phantom's label names
            want = {names[k]: v for k, v in truth[item["case_id"]]["volume_ml"].items()}
            assert facts.volumes_ml == pytest.approx(want, abs=1e-4)
        # 2 mm voxels hold 8x the volume
        big = img.affine.copy()
        big[:3, :3] *= 2
        assert describe_case(seg, big).volumes_ml["ED"] == pytest.approx(8 * facts.volumes_ml["ED"])


def test_hemisphere_is_right_for_every_tumour_phantom_and_lobes_mostly_agree():
    lobes = 0
    n = 30
    for i in range(n):
        case = make_phantom_case(case_seed(11, i), (32, 32, 24), tumour=True)
        facts = describe_case(case.seg, case.affine, brain_mask=case.brain_mask)
        truth = case.metadata["tumour"]
        assert facts.hemisphere == truth["hemisphere"], (i, facts, truth["centre_head_frame"])
        # every world x is <= 0 here: the midline is the brain's centroid, not x = 0
        assert facts.brain_centroid_mm[0] < 0
        lobes += facts.lobe == truth["lobe"]
    # the phantom labels lobes from the tumour's design centre, we from the label centroid
    # (oedema spreads unevenly): a coarse position, most cases agree
    assert lobes / n >= 0.7, lobes


def test_location_follows_the_affine_not_the_voxel_order():
    case = make_phantom_case(case_seed(5, 0), (32, 32, 24), tumour=True)
    facts = describe_case(case.seg, case.affine, brain_mask=case.brain_mask)
    # the same head stored with x reversed (RAS instead of LAS-like): flip the array and the affine
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = case.seg.shape[0] - 1
    ras = describe_case(case.seg[::-1], case.affine @ flip, brain_mask=case.brain_mask[::-1])
    assert (ras.hemisphere, ras.lobe) == (facts.hemisphere, facts.lobe)
    # the mirrored head (array flipped, affine kept) has its tumour on the other side
    mirrored = describe_case(case.seg[::-1], case.affine, brain_mask=case.brain_mask[::-1])
    assert mirrored.hemisphere == {"left": "right", "right": "left"}[facts.hemisphere]


def test_tumour_free_case_says_no_tumour():
    case = make_phantom_case(case_seed(5, 1), (32, 32, 24), tumour=False)
    facts = describe_case(case.seg, case.affine, brain_mask=case.brain_mask, modalities=["t2f"])
    assert not facts.has_tumour and facts.hemisphere is None and facts.volumes_ml == {"NCR": 0, "ED": 0, "ET": 0}
    assert build_prompt(facts) == "Brain MRI (FLAIR). No tumour."


def test_build_prompt_sentences_and_facts_choice():
    facts = CaseFacts(modalities=("t1n", "t2f", "dwi"), has_tumour=True,
                      volumes_ml={"NCR": 1.23, "ED": 20.31, "ET": 0.456}, hemisphere="left", lobe="frontal")
    assert build_prompt(facts) == ("Brain MRI (T1, FLAIR, dwi). Tumour in the left frontal lobe; necrotic core "
                                   "1.2 ml, oedema 20.3 ml, enhancing tumour 0.46 ml.")
    assert build_prompt(facts, include=["location"]) == "Tumour in the left frontal lobe."
    with pytest.raises(ValueError, match="unknown prompt facts"):
        build_prompt(facts, include=["grade"])
    assert [lobe_of(0.5, 0), lobe_of(-0.5, 0), lobe_of(0, 0.5), lobe_of(0, -0.5)] == [
        "frontal", "occipital", "parietal", "temporal"]


def test_text_fields_win_and_are_written_to_a_new_manifest(phantoms, tmp_path):
    manifest, root, truth = phantoms
    data = read_manifest(manifest)
    first = data["training"][0]["case_id"]
    data["training"][0]["text"] = "a curated report"
    edited = write_manifest(data, tmp_path / "edited.json")
    assert prompts_for_manifest(edited, root)[first] == "a curated report"
    with pytest.raises(DataError, match="no 'text' field"):
        prompts_for_manifest(edited, root, source="manifest")

    counts = add_prompts_to_manifest(edited, tmp_path / "with_text.json", root)
    assert counts == {"written": len(truth) - 1, "kept": 1, "skipped": 0}
    items = load_manifest(tmp_path / "with_text.json", root)  # still a valid manifest; text kept as written
    texts = {it["case_id"]: it["text"] for it in items}
    assert texts[first] == "a curated report"
    built = prompts_for_manifest(manifest, root)
    assert all(texts[c] == built[c] for c in texts if c != first)
    assert prompts_for_manifest(tmp_path / "with_text.json", root, source="manifest") == texts

    again = add_prompts_to_manifest(edited, tmp_path / "over.json", root, overwrite=True, include=["location"])
    assert again["written"] == len(truth)
    over = {it["case_id"]: it["text"] for it in load_manifest(tmp_path / "over.json", root)}
    assert over[first] != "a curated report" and all("ml" not in t for t in over.values())
