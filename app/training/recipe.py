"""The recipe a model artifact carries: its training configuration (app/training/config.py),
its input (shape, classes, preprocessing) and the dataset version it learned from.

The original's lr of 0.01 was measured to collapse to chance on some seeds (keras and torch
alike); 1e-3 learns reliably on every dataset here, so it is the default peak.
"""
from __future__ import annotations

from app.errors import UserError
from app.training.config import TrainConfig


def make_recipe(config: TrainConfig, input_shape: list[int], class_names: list[str], dataset: dict,
                preprocessing: dict | None = None) -> dict:
    """The configuration's own part (TrainConfig.recipe_part: arch, epochs, model, hyperparameters,
    the layout every model logged so far has) plus the data's description. `preprocessing`
    (app/data/preprocessing.py) is how evaluate and predict bring images to the model as training did."""
    extra = {"preprocessing": preprocessing} if preprocessing is not None else {}
    return {
        **extra,
        **config.recipe_part(),
        "input_shape": list(input_shape),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "dataset": dataset,  # {"ref": "digits-split:v0", "digest": ..., "name": "digits"}
    }


def check_locked(recipe: dict, given: dict) -> None:
    """--retrain uses the candidate's own hyperparameters: a flag that changes one is an error."""
    locked = recipe.get("hyperparameters")
    if not isinstance(locked, dict):
        raise UserError("the model carries no recipe hyperparameters: it was not logged by train.py.")
    changed = [k for k, v in given.items() if v is not None and k in locked and v != locked[k]]
    changed += [k for k, v in given.items() if v is not None and k not in locked]
    if changed:
        detail = ", ".join(f"{k} (recipe: {locked.get(k, 'not used')}, given: {given[k]})" for k in changed)
        raise UserError(
            f"--retrain keeps the candidate's hyperparameters; locked: {detail}. "
            "Only --epochs (and --warm-start) may be given; train a new baseline to change the rest."
        )
