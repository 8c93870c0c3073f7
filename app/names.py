"""Every name the scripts agree on: artifacts, registry collections, aliases, job types."""
from __future__ import annotations

import re

BUNDLED_DATASETS = ("mnist", "fashion_mnist", "digits", "cifar10")  # data_prep's named sources
# A dataset name is the prefix of its artifacts (<name>-split, <name>-<arch>): W&B's artifact
# name characters, starting with a letter or digit.
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# torchvision's ImageNet classifiers for transfer learning (app/models/zoo.py), at their own input size
PRETRAINED_ARCHITECTURES = ("resnet18", "resnet50", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny")
ARCHITECTURES = ("convnet", "cnn", "mlp", "resnet", *PRETRAINED_ARCHITECTURES)
AUGMENTATIONS = ("none", "crop", "crop-flip", "crop-flip-grey")  # train.py --augment (app/training/augment.py)
SCHEDULES = ("cosine", "constant")  # train.py --schedule, after warm-up (app/training/optimizer.py)

DATASET_TYPE = "dataset"
MODEL_TYPE = "model"
EVALUATION_TYPE = "evaluation"
ONNX_TYPE = "onnx"  # a model's ONNX export (app/serving/onnx_export.py)
CHECKPOINT_TYPE = "checkpoint"  # a training run's resumable state (app/training/checkpoint.py)
SERVING_SAMPLES = "serving-samples"  # serve.py --log-samples: served images as an image folder (type dataset)

REGISTRY = "wandb-registry-model"  # W&B's model registry, as it appears in refs

CANDIDATE = "candidate"  # set by `train.py --tune` on the best trial
TO_EVALUATE = "to_evaluate"  # set by `train.py --retrain`
PRODUCTION = "production"  # moved by `evaluate.py --promote` or a person
LATEST = "latest"  # moved by every new version, never by hand

# Job types of runs that train and checkpoint, so can be resumed: one process at a time trains one
# (app/tracking/session.py holds the run while it trains).
TRAINING_JOBS = ("train", "retrain", "sweep_trial")


# Keys train.py logs every epoch, with `epoch` as the step. The best-so-far keys are plain
# scalars on purpose: define_metric(summary="max") stores a nested {"max": v} summary, which
# a sweep metric cannot name, so sweep.yaml optimises val/best_accuracy, a key really logged.
# The per-epoch values a model artifact keeps as its learning curves (metadata "history").
LEARNING_CURVES = ("epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy")
EPOCH_METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/best_accuracy", "val/best_loss")


def dataset_name(text: str) -> str:
    """argparse type of --dataset / --name: a name W&B accepts as an artifact prefix."""
    import argparse

    if not DATASET_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a dataset name: letters, digits, '-', '_' and '.', starting with a letter or digit "
            "(e.g. digits, cifar10, my-photos)")
    return text


def name_from_folder(folder: str) -> str:
    """A folder's name made into a dataset name (`My Photos!` -> `My-Photos`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder).strip("-._")[:64]
    return name or "images"


def dataset_artifact(dataset: str) -> str:
    return f"{dataset}-split"


def model_artifact(dataset: str, arch: str) -> str:
    return f"{dataset}-{arch}"


def evaluation_artifact(dataset: str, arch: str) -> str:
    return f"{dataset}-{arch}-evaluation"


def onnx_artifact(model_collection: str) -> str:
    """The export of versions of `<dataset>-<arch>`: `<dataset>-<arch>-onnx`."""
    return f"{model_collection}-onnx"


BEST = "best"  # the checkpoint of a run's best validation epoch so far


def checkpoint_artifact(run_id: str) -> str:
    """One collection per run, so `--resume RUN_ID` finds it: `checkpoint-<run id>`."""
    return f"checkpoint-{run_id}"


def registry_ref(collection: str, alias: str) -> str:
    return f"{REGISTRY}/{collection}:{alias}"
