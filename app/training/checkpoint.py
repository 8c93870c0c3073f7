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
STATE_FILE = "training_state.pt"  # a checkpoint artifact's: engine.training_state, beside recipe.json


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


def save_training_state(state: dict, recipe: dict, folder: Path) -> dict[str, Path]:
    """A checkpoint artifact's files: the whole training state and the recipe it continues."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    (folder / RECIPE_FILE).write_text(json.dumps(recipe, indent=1, sort_keys=True), encoding="utf-8")
    return {STATE_FILE: folder / STATE_FILE, RECIPE_FILE: folder / RECIPE_FILE}


def load_training_state(folder: Path, recipe: dict, ref: str) -> dict:
    """A checkpoint's training state, refused with the reason when it is damaged or does not
    fit `recipe`'s model (another architecture or size): nothing is trained from it then."""
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"refused checkpoint {ref}: {STATE_FILE} is damaged or not a training state saved by this "
                        f"project ({summary(err)}). Resume from another version, or train anew.") from err
    needed = {"epoch", "model", "optimizer", "scheduler", "shuffle_rng", "torch_rng", "history", "best_accuracy"}
    if not isinstance(state, dict) or not needed <= set(state):
        raise UserError(f"refused checkpoint {ref}: {STATE_FILE} is not a training state saved by this project "
                        f"(it lacks {', '.join(sorted(needed - set(state if isinstance(state, dict) else {})))}).")
    try:
        build_model(recipe).load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError, KeyError) as err:
        raise UserError(f"refused checkpoint {ref}: its weights do not fit the {recipe.get('arch')!r} model of its "
                        f"recipe ({summary(err)}); it was saved by another model. Train anew.") from err
    return state
