"""Out-of-fold probabilities of the training split, for `evaluate.py --label-issues train`: K
models of the evaluated model's own recipe, each trained on the other folds (the validation split
choosing its best epoch, as train.py does) and predicting the fold it never saw. K trainings of the
recipe: slow, and said so before it starts."""
from __future__ import annotations

import numpy as np
import torch

from app.progress import say
from app.training import engine
from app.recipe import Recipe
from app.training.workflow import TrainingData, train

FOLDS = 5


def out_of_fold_probabilities(recipe: Recipe, split, device: torch.device, folds: int = FOLDS,
                              seed: int = 0) -> np.ndarray:
    """float32 (N train, classes): each training image's probabilities from the fold model that
    did not train on it."""
    from sklearn.model_selection import StratifiedKFold

    from app.inference import probabilities

    config = recipe.config
    images, labels = np.asarray(split.images["train"][:]), np.asarray(split.labels["train"])
    val = engine.to_tensors(np.asarray(split.images["val"][:]), split.labels["val"], device, recipe.input)
    out = np.zeros((len(labels), recipe.num_classes), np.float32)
    smallest = int(np.bincount(labels).min())
    folds = max(2, min(folds, smallest))  # stratified folds need as many images of each class
    say(f"--label-issues train: {folds} trainings of the recipe ({config.arch}, {config.epochs} epochs each) "
        f"for out-of-fold predictions of {len(labels)} training images; this takes about {folds}x the "
        "model's own training time")
    for k, (fit, held_out) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(images, labels)):
        data = TrainingData(train=engine.to_tensors(images[fit], labels[fit], device, recipe.input), val=val,
                            num_classes=recipe.num_classes)
        model, _ = train(config, data, progress=False)
        out[held_out] = probabilities(model, images[held_out], device, recipe)
        say(f"  fold {k + 1}/{folds}: {len(held_out)} images predicted")
    return out
