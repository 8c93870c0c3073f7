"""A model on disk: `model.pt` (a state_dict only) beside the `recipe.json` that rebuilds it.

No pickled module crosses a hand-off: weights load with `weights_only=True`, so a model artifact
cannot run code on the machine that loads it. Evaluation, serving and training load models here.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from app.errors import UserError, summary
from app.models import build_model
from app.recipe import RECIPE_FILE, Recipe

WEIGHTS_FILE = "model.pt"


def save_model(model: torch.nn.Module, recipe: Recipe, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    # contiguous CPU tensors: the file is the same whichever device or memory format trained it
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    return {WEIGHTS_FILE: folder / WEIGHTS_FILE, RECIPE_FILE: recipe.save(folder)}


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict:
    """A state_dict of tensors, refused (with the reason) when the file is anything else."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise UserError(
            f"refused to load {path}: it is not a plain state_dict of tensors "
            f"({summary(err)}). Only weights saved by this project load."
        ) from err


def load_model(folder: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Recipe]:
    recipe = Recipe.load(folder)
    model = build_model(recipe)
    state = load_weights(folder / WEIGHTS_FILE, device)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UserError(f"the weights in {folder} do not fit the recipe's {recipe.arch!r} model ({err}).") from err
    return model.to(device), recipe
