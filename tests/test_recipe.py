"""The typed Recipe (app/recipe): the one owner of recipe.json. Every layout a model was ever
logged with loads (one of each is held here, as train.py wrote it then), a round trip is exact,
nothing outside app/recipe reads the recipe's keys, and a model loads below app/training."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import pytest
import torch

from app.errors import UserError
from app.models import build_model
from app.models.files import WEIGHTS_FILE, load_model, save_model
from app.recipe import FORMAT, RECIPE_FILE, DatasetRef, InputSpec, Recipe
from app.recipe.config import TrainConfig
from conftest import REPO

CLASSES = [str(i) for i in range(10)]
DATASET = {"ref": "digits-split:v0", "digest": "0123abcd", "name": "digits"}
CNN = {"dropout_1": 0.25, "dropout_2": 0.25, "dropout_3": 0.5, "dense": 128}

# What train.py wrote, layout by layout (the commit that introduced each).
OLDER_LAYOUTS = {
    # 016a958, the first release: no epochs, no preprocessing, three training hyperparameters
    "first release": {"arch": "cnn", "input_shape": [1, 28, 28], "num_classes": 10, "class_names": CLASSES,
                      "model": CNN, "hyperparameters": {"lr": 0.001, "batch_size": 64, "seed": 0, **CNN},
                      "dataset": DATASET},
    # 1106ee0, own images: the preprocessing (size, channels, the split's mean and std, resize rule)
    "preprocessing": {"arch": "cnn", "input_shape": [3, 20, 24], "num_classes": 10, "class_names": CLASSES,
                      "model": CNN, "hyperparameters": {"lr": 0.001, "batch_size": 32, "seed": 3, **CNN},
                      "dataset": DATASET,
                      "preprocessing": {"size": [20, 24], "channels": 3, "mean": [0.5, 0.4, 0.3],
                                        "std": [0.2, 0.25, 0.3], "resize": "scaled to cover, centre cropped",
                                        "invert_light_background": False}},
    # 97b25d8 until the typed Recipe: epochs and every training hyperparameter
    "epochs and schedule": {
        "arch": "convnet", "epochs": 12, "input_shape": [1, 28, 28], "num_classes": 10, "class_names": CLASSES,
        "model": {"width": 8},
        "hyperparameters": {"lr": 0.002, "batch_size": 64, "weight_decay": 0.0001, "warmup": 0.05, "schedule": "cosine",
                            "label_smoothing": 0.1, "augment": "none", "seed": 0, "width": 8},
        "dataset": DATASET,
        "preprocessing": {"size": [28, 28], "channels": 1, "mean": [0.13], "std": [0.31], "resize": None,
                          "invert_light_background": True}},
}


@pytest.mark.parametrize("layout", list(OLDER_LAYOUTS))
def test_every_older_layout_loads_as_the_training_it_describes(tmp_path, layout):
    old = OLDER_LAYOUTS[layout]
    recipe = Recipe.from_dict(old)
    assert recipe.arch == old["arch"] and recipe.class_names == tuple(CLASSES)
    assert list(recipe.input.shape) == old["input_shape"] and recipe.dataset == DatasetRef(**DATASET)
    assert recipe.config.model == old["model"]
    assert all(getattr(recipe.config, k) == v for k, v in old["hyperparameters"].items())
    assert recipe.config.epochs == old.get("epochs", 5)  # the original's five before epochs were recorded
    if "preprocessing" in old:
        assert recipe.input.to_dict() == old["preprocessing"]
    else:  # greyscale digits, seen without normalisation, a light scan inverted (as predict.py did then)
        assert not recipe.input.normalises and recipe.input.invert_light_background
    if "weight_decay" not in old["hyperparameters"]:  # trained before the key: without it
        assert (recipe.config.weight_decay, recipe.config.schedule, recipe.config.augment) == (0.0, "constant", "none")

    # a model artifact of that layout: its weights load into the model its recipe rebuilds
    torch.manual_seed(0)
    weights = build_model(recipe).state_dict()
    torch.save(weights, tmp_path / WEIGHTS_FILE)
    (tmp_path / RECIPE_FILE).write_text(json.dumps(old))
    model, loaded = load_model(tmp_path)
    assert loaded == recipe and all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)


def test_a_recipe_round_trips_and_is_written_in_the_current_layout(tmp_path):
    recipe = Recipe(TrainConfig(arch="cnn", epochs=7, lr=0.002, dense=64, augment="crop"),
                    InputSpec(3, (20, 24), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "scaled to cover"),
                    ("cat", "dog"), DatasetRef(**DATASET))
    torch.manual_seed(0)
    save_model(build_model(recipe), recipe, tmp_path)
    written = json.loads((tmp_path / RECIPE_FILE).read_text())
    assert written["format"] == FORMAT and written["input"]["size"] == [20, 24]
    # one name for the image size: the old ones are gone from what is written
    assert not {"input_shape", "num_classes", "model", "preprocessing"} & set(written)
    assert Recipe.load(tmp_path) == recipe and Recipe.from_dict({**written, "metrics": {}, "seed": 0}) == recipe


@pytest.mark.parametrize("content, phrase", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"format": 99, "arch": "cnn"}), "format 99, which this version of the project does not know"),
    (json.dumps({"format": FORMAT, "arch": "cnn", "epochs": 2, "hyperparameters": {}}), "cannot be read"),
    (json.dumps({"arch": "cnn", "input_shape": "28x28", "num_classes": 10}), "cannot be read"),
    (json.dumps([1, 2]), "names no architecture"),
])
def test_a_damaged_recipe_is_a_clear_error(tmp_path, content, phrase):
    (tmp_path / RECIPE_FILE).write_text(content)
    with pytest.raises(UserError, match=re.escape(phrase)):
        Recipe.load(tmp_path)


def test_no_code_outside_app_recipe_reads_the_recipes_keys():
    """The recipe's layout is app/recipe's alone: elsewhere a Recipe's attributes, never its keys."""
    offenders = []
    for path in (REPO / "app").rglob("*.py"):
        if path.parent.name == "recipe":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"recipe\[|recipe\.get\(|\[\"(input_shape|num_classes|preprocessing)\"\]", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []


# The layers, lowest first: a module imports from its own package or a lower layer only.
LAYERS = [{"errors", "names", "cli", "progress", "spreadsheet", "processes"}, {"recipe"},
          {"data", "models", "model_card"}, {"inference"}, {"training", "evaluation", "tracking", "hooks"},
          {"serving", "tuning"}, {"jobs"}, {"pipelines"}]


def layer_of(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def test_no_module_imports_from_its_own_layer_or_above():
    """app/recipe below the models, inference below evaluation, serving and training (a served
    image never passes through app/training), and so on up to the scripts."""
    offenders = []
    for path in (REPO / "app").rglob("*.py"):
        parts = path.relative_to(REPO / "app").parts
        own = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        if own == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if not name.startswith("app.") or name.split(".")[1] == own:
                    continue
                if layer_of(name.split(".")[1]) >= layer_of(own):
                    offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert offenders == []


def test_a_model_loads_and_answers_without_app_training(tmp_path):
    """Evaluation and serving load models through app/models/files.py and answer through
    app/inference.py, which need no training or evaluation code."""
    recipe = Recipe(TrainConfig(arch="mlp", epochs=1, hidden=8), InputSpec.plain([1, 8, 8]), ("a", "b"))
    save_model(build_model(recipe), recipe, tmp_path)
    probe = ("import sys; from pathlib import Path; import numpy as np; from app.serving.predictor import Predictor; "
             f"Predictor(Path({str(tmp_path)!r})).probabilities(np.zeros((3, 8, 8), np.uint8)); "
             "print(sorted(m for m in sys.modules if m.startswith(('app.training', 'app.evaluation'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
