"""Architectures, each built from a plain recipe so a saved recipe rebuilds it exactly.

A recipe is a dict: {"arch": "cnn", "input_shape": [1, 28, 28], "num_classes": 10,
"model": {...the architecture's hyperparameters...}}.
"""
from __future__ import annotations

from app.errors import UserError
from app.models import cnn, mlp

ARCHITECTURES = {"cnn": cnn, "mlp": mlp}


def model_defaults(arch: str) -> dict:
    return dict(_module(arch).DEFAULTS)


def build_model(recipe: dict):
    module = _module(recipe.get("arch"))
    try:
        return module.build(list(recipe["input_shape"]), int(recipe["num_classes"]), **recipe["model"])
    except (KeyError, TypeError) as err:
        raise UserError(f"the model recipe does not fit architecture {recipe['arch']!r} ({err}).") from err


def _module(arch):
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[arch]
