"""A checkpoint artifact's files: the whole training state (`training_state.pt`: weights,
optimizer, scheduler, random states, history) beside the recipe it continues. A model's own files
(weights and recipe) are app/models/files.py's."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from app.errors import UserError, summary
from app.models import build_model
from app.recipe import RECIPE_FILE, Recipe

STATE_FILE = "training_state.pt"


def save_training_state(state: dict, recipe: Recipe, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    return {STATE_FILE: folder / STATE_FILE, RECIPE_FILE: recipe.save(folder)}


def load_training_state(folder: Path, recipe: Recipe, ref: str) -> dict:
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
        raise UserError(f"refused checkpoint {ref}: its weights do not fit the {recipe.arch!r} model of its "
                        f"recipe ({summary(err)}); it was saved by another model. Train anew.") from err
    return state
