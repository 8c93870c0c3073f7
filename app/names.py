"""Every name the scripts agree on: artifacts, registry collections, aliases, job types."""
from __future__ import annotations

DATASETS = ("mnist", "fashion_mnist", "digits")
ARCHITECTURES = ("cnn", "mlp")

DATASET_TYPE = "dataset"
MODEL_TYPE = "model"
EVALUATION_TYPE = "evaluation"

REGISTRY = "wandb-registry-model"  # W&B's model registry, as it appears in refs

CANDIDATE = "candidate"  # set by `train.py --tune` on the best trial
TO_EVALUATE = "to_evaluate"  # set by `train.py --retrain`
PRODUCTION = "production"  # moved by `evaluate.py --promote` or a person
LATEST = "latest"  # moved by every new version, never by hand


# train.py's hyperparameter flags: a sweep may set them, and --retrain locks them.
HYPERPARAMETERS = ("lr", "batch_size", "seed", "dropout_1", "dropout_2", "dropout_3", "dense", "hidden")

# Keys train.py logs every epoch, with `epoch` as the step. The best-so-far keys are plain
# scalars on purpose: define_metric(summary="max") stores a nested {"max": v} summary, which
# a sweep metric cannot name, so sweep.yaml optimises val/best_accuracy, a key really logged.
EPOCH_METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/best_accuracy", "val/best_loss")


def dataset_artifact(dataset: str) -> str:
    return f"{dataset}-split"


def model_artifact(dataset: str, arch: str) -> str:
    return f"{dataset}-{arch}"


def evaluation_artifact(dataset: str, arch: str) -> str:
    return f"{dataset}-{arch}-evaluation"


def registry_ref(collection: str, alias: str) -> str:
    return f"{REGISTRY}/{collection}:{alias}"
