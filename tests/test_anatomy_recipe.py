"""configs/anatomy_2mm.yaml is the recipe that trained the shipped `anatomy-2mm`: its resolved config
equals the model's config.json on every key but the paths, run name, device and budget."""

from __future__ import annotations

import json
from pathlib import Path

from medidiff.config import flatten, from_dict, load_config, to_dict
from medidiff.experiment import ExperimentConfig
from medidiff.pretrained import pretrained_folder

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "anatomy_2mm.yaml"
# where the recipe may differ from the shipped run: where the data and runs live, the run's name,
# the card it ran on and its budget (the run stopped at train.max_steps 4901, under a 10-minute wall clock)
NOT_COMPARED = {"data.manifest", "data.root", "output_dir", "name", "train.device", "train.max_minutes",
                "train.max_steps"}


def _shipped() -> dict:
    return json.loads((pretrained_folder("anatomy-2mm") / "config.json").read_text())["config"]


def test_recipe_equals_the_shipped_models_config():
    recipe = flatten(to_dict(load_config(RECIPE)))
    raw = flatten(_shipped())
    # keys added to the schema after the model was trained take their defaults in both (a recipe
    # that set one away from its default would not be the shipped model's recipe)
    shipped = flatten(to_dict(from_dict(ExperimentConfig, _shipped(), source="anatomy_2mm/config.json")))
    assert set(raw) <= set(shipped), f"config.json keys the schema lost: {sorted(set(raw) - set(shipped))}"
    assert set(recipe) == set(shipped)
    differ = {k: (recipe[k], shipped[k]) for k in recipe if k not in NOT_COMPARED and recipe[k] != shipped[k]}
    assert not differ, f"configs/anatomy_2mm.yaml vs the shipped config.json (recipe, shipped): {differ}"


def test_recipe_budget_and_paths_are_a_users():
    cfg = load_config(RECIPE)
    steps = json.loads((pretrained_folder("anatomy-2mm") / "config.json").read_text())["step"]
    assert cfg.train.max_minutes == 0 and abs(cfg.train.max_steps - steps) <= 0.1 * steps  # a comparable step budget
    assert cfg.data.manifest == "data_manifests/anatomy_2mm.json"
    assert _shipped()["train"]["max_steps"] == steps == cfg.train.max_steps  # what the recipe's comment says it stopped on
