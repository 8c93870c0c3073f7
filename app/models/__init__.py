"""Architectures, each built from a plain recipe so a saved recipe rebuilds it exactly.

A recipe is a dict: {"arch": "cnn", "input_shape": [1, 28, 28], "num_classes": 10,
"model": {...the architecture's hyperparameters...}}.
"""
from __future__ import annotations

from app.errors import UserError
from app.models import cnn, mlp, resnet

ARCHITECTURES = {"cnn": cnn, "mlp": mlp, "resnet": resnet}


def model_defaults(arch: str) -> dict:
    return dict(_module(arch).DEFAULTS)


def build_model(recipe: dict):
    module = _module(recipe.get("arch"))
    try:
        return module.build(list(recipe["input_shape"]), int(recipe["num_classes"]), **recipe["model"])
    except (KeyError, TypeError) as err:
        raise UserError(f"the model recipe does not fit architecture {recipe['arch']!r} ({err}).") from err


def load_pretrained(recipe: dict, model) -> None:
    """Training's starting weights, where the architecture offers them and the recipe asks
    (resnet --pretrained); a model rebuilt from a saved recipe loads its own weights instead."""
    module = _module(recipe.get("arch"))
    if recipe["model"].get("pretrained") and hasattr(module, "load_pretrained"):
        module.load_pretrained(model)


def _module(arch):
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]
