"""Hyperparameters, their defaults, and the recipe a model artifact carries.

The original's lr of 0.01 was measured to collapse to chance on some seeds (keras and torch
alike); Adam's customary 1e-3 learns reliably on every dataset here, so it is the default.
"""
from __future__ import annotations

from app.errors import UserError
from app.models import model_defaults

TRAINING_DEFAULTS = {
    "lr": 1e-3,  # Adam learning rate
    "batch_size": 64,  # samples per step
    "seed": 0,  # weights, dropout, augmentation and batch order
    "augment": None,  # none | crop | crop-flip (app/training/augment.py); None: the dataset's default
}
DEFAULT_EPOCHS = 5  # as the original


def hyperparameters(arch: str, given: dict) -> dict:
    """Defaults for `arch`, overridden by the flags that were given (not None)."""
    values = {**TRAINING_DEFAULTS, **model_defaults(arch)}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in values)
    if unknown:
        raise UserError(f"{', '.join(unknown)} do(es) not apply to --arch {arch}; drop the flag(s).")
    values.update({k: v for k, v in given.items() if v is not None and k in values})
    return values


def make_recipe(arch: str, hyper: dict, input_shape: list[int], class_names: list[str], dataset: dict,
                preprocessing: dict | None = None) -> dict:
    """The recipe a model artifact carries; `preprocessing` (app/data/preprocessing.py) is how
    evaluate and predict bring images to the model as training did."""
    model_keys = model_defaults(arch)
    extra = {"preprocessing": preprocessing} if preprocessing is not None else {}
    return {
        **extra,
        "arch": arch,
        "input_shape": list(input_shape),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "model": {k: hyper[k] for k in model_keys},
        "hyperparameters": dict(hyper),
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
