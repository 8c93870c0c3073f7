"""A model on disk: `model.pt` (state_dict only) + `recipe.json` that rebuilds it.

No pickled module crosses a hand-off: weights load with `weights_only=True`, so a model
artifact cannot run code on the machine that loads it.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from app.errors import UserError, summary
from app.models import build_model

WEIGHTS_FILE = "model.pt"
RECIPE_FILE = "recipe.json"


def save_checkpoint(model: torch.nn.Module, recipe: dict, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    # contiguous CPU tensors: the file is the same whichever device or memory format trained it
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    (folder / RECIPE_FILE).write_text(json.dumps(recipe, indent=1, sort_keys=True), encoding="utf-8")
    return {WEIGHTS_FILE: folder / WEIGHTS_FILE, RECIPE_FILE: folder / RECIPE_FILE}


def read_recipe(folder: Path) -> dict:
    path = folder / RECIPE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise UserError(f"{folder} holds no {RECIPE_FILE}: it is not a model artifact of this project.") from err
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); log the model again.") from err


def load_checkpoint(folder: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    recipe = read_recipe(folder)
    model = build_model(recipe)
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        raise UserError(
            f"refused to load {folder / WEIGHTS_FILE}: it is not a plain state_dict of tensors "
            f"({summary(err)}). Only weights saved by this project load."
        ) from err
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UserError(f"the weights in {folder} do not fit the recipe's {recipe['arch']!r} model ({err}).") from err
    return model.to(device), recipe
