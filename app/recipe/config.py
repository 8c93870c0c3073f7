"""One training run's configuration, and the one list of hyperparameters there is.

Every field of TrainConfig is what train.py takes as a flag (generated from the field), what a
sweep may set, what --retrain locks and what the model artifact keeps in its recipe (app/recipe). Fields
marked `arch=...` belong to one architecture: app/models/<arch>.py builds from them. No torch here: train.py's --help reads it.
"""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace

from app import names
from app.cli import positive_int
from app.errors import UserError


def option(default, help: str, *, arch: str | tuple | None = None, bounds: tuple | None = None, model: bool = True,
           augmented=None, **flag):
    """A hyperparameter and its train.py flag: `help` documents both; `arch` names the
    architecture(s) that use it (`model`: as a setting its build takes, else in training only); `bounds` (low, high) are checked before any run and on every
    stored recipe; `augmented`: the default convnet's default on an augmented split, where it
    differs (with_dataset_defaults); `flag` adds argparse's type or choices where the annotation's is not enough."""
    archs = (arch,) if isinstance(arch, str) else arch
    return field(default=default, metadata={"help": help, "arch": archs, "bounds": bounds, "model": model,
                                            "augmented": augmented, "flag": flag})


@dataclass(frozen=True)  # frozen: nothing changes a field after the run's config is logged
class TrainConfig:
    arch: str = "convnet"  # app/models/: convnet (the default), cnn (the original's), mlp, resnet, torchvision's
    # Passes over the training split (the best validation epoch's weights are kept). None: chosen
    # from the training split's size for a budget of step_budget(augment) steps (with_dataset_defaults).
    epochs: int | None = None
    # `augmented`: the convnet's defaults on an augmented (colour) split, measured in
    # docs/performance.md ("The colour defaults"); a plain split (digits, MNIST) keeps the first.
    lr: float = option(1e-3, "peak learning rate of AdamW", augmented=0.0052)
    batch_size: int = option(64, "samples per step (per process under torchrun)", type=positive_int, augmented=32)
    weight_decay: float = option(1e-4, "AdamW's decoupled weight decay (biases and norms: none)", augmented=0.0027)
    warmup: float = option(0.05, "share of all steps warming the learning rate up linearly from 0")
    schedule: str = option("cosine", "learning rate after warm-up (cosine: to 0 at the last step)",
                           choices=names.SCHEDULES)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", augmented=0.1)
    augment: str | None = option(None, "training-batch augmentation: random crop with padding, and mirroring "
                                 "with crop-flip, and 1 image in 8 greyscale with crop-flip-grey (default: the "
                                 "dataset's: none for digits/MNIST-like sets, crop-flip for colour sets, "
                                 "crop-flip-grey for colour folders with greyscale files)",
                                 choices=names.AUGMENTATIONS)
    seed: int = option(0, "seed of weights, dropout, augmentation and batch order", type=int)
    # The architectures' own (app/models/<arch>.py)
    width: int = option(32, "channels of the first group (then 2x and 4x)", arch="convnet", bounds=(1, 1024))
    dropout_1: float = option(0.25, "dropout after the first conv block", arch="cnn", bounds=(0.0, 1.0))
    dropout_2: float = option(0.25, "dropout after the second conv block", arch="cnn", bounds=(0.0, 1.0))
    dropout_3: float = option(0.5, "dropout after the dense layer", arch="cnn", bounds=(0.0, 1.0))
    dense: int = option(128, "units of the dense layer", arch="cnn", bounds=(1, 65536))
    hidden: int = option(512, "units of each hidden layer", arch="mlp", bounds=(1, 65536))
    pretrained: bool = option(False, "resnet and torchvision's classifiers (resnet18, resnet50, efficientnet_b0, "
                              "mobilenet_v3_large, convnext_tiny): start from ImageNet weights (network the first time)",
                              arch=("resnet", *names.PRETRAINED_ARCHITECTURES))
    # Fine-tuning torchvision's pretrained classifiers (app/models/zoo.py): the new classifier learns
    # alone first, then the pretrained layers join at a lower rate (app/training/optimizer.py).
    head_only: float = option(0.1, "with --pretrained: share of all steps that train only the new classifier",
                              arch=names.PRETRAINED_ARCHITECTURES, model=False)
    backbone_lr: float = option(0.1, "with --pretrained: the pretrained layers' learning rate, as a share of --lr",
                                arch=names.PRETRAINED_ARCHITECTURES, model=False)

    STRUCTURE = ("arch", "epochs")  # what the recipe keeps as its own keys, not as hyperparameters

    @property
    def model(self) -> dict:
        """This architecture's own settings: what app/models/<arch>.py's build takes."""
        return {f.name: getattr(self, f.name) for f in model_fields(self.arch)}

    def hyperparameters(self) -> dict:
        """The flat dict a recipe keeps: the training fields and this architecture's own."""
        return {f.name: getattr(self, f.name) for f in hyperparameter_fields(self.arch)}


def hyperparameter_fields(arch: str | None = None) -> list:
    """Every hyperparameter (arch None), or those `arch` uses: train.py's flags, a sweep's parameters."""
    return [f for f in fields(TrainConfig) if f.name not in TrainConfig.STRUCTURE
            and (arch is None or f.metadata["arch"] is None or arch in f.metadata["arch"])]


def model_fields(arch: str) -> list:
    return [f for f in fields(TrainConfig) if arch in (f.metadata.get("arch") or ()) and f.metadata["model"]]


def hyperparameter_names(arch: str | None = None) -> tuple[str, ...]:
    return tuple(f.name for f in hyperparameter_fields(arch))


def model_defaults(arch: str) -> dict:
    return {f.name: f.default for f in model_fields(arch)}


def add_flags(group) -> None:
    """train.py's flag for every hyperparameter: its help, type or choices, and its default named
    in the help. The flag itself defaults to None ("not given"), so --retrain tells a changed value
    from the candidate's own and a default can depend on the architecture or the dataset."""
    for f in hyperparameter_fields():
        flag = dict(f.metadata["flag"])
        if f.type == "bool":  # --pretrained / --no-pretrained; a sweep passes it as W&B's ${args_no_boolean_flags}
            flag["action"] = argparse.BooleanOptionalAction
        elif "choices" not in flag:
            flag.setdefault("type", {"float": float, "int": int}[f.type])
        archs = f.metadata["arch"] or ()
        owner = f"{archs[0]}: " if len(archs) == 1 else ""  # several: the help names them
        augmented = "" if f.metadata["augmented"] is None else f"; convnet on an augmented split: {f.metadata['augmented']}"
        default = "" if f.default is None else f" (default {f.default}{augmented})"
        group.add_argument(f"--{f.name.replace('_', '-')}", help=owner + f.metadata["help"] + default, default=None, **flag)


def check_model_settings(arch: str, model: dict) -> None:
    """An architecture's own settings within their bounds (dense=10**9 would ask torch for
    terabytes): checked on the flags before any run starts and on every stored recipe."""
    for f in model_fields(arch):
        value = model.get(f.name, f.default)
        if f.metadata["bounds"] is None:
            continue
        low, high = f.metadata["bounds"]
        whole = isinstance(low, int)
        number = isinstance(value, int) if whole else isinstance(value, (int, float))
        if not (number and not isinstance(value, bool) and low <= value <= high):
            raise out_of_range(f"{f.name}={value!r}", f"{'a whole number' if whole else 'a number'} in {low}..{high}")


def out_of_range(what: str, expected: str) -> UserError:
    return UserError(f"the model recipe's {what} is out of range (expected {expected}). Given as a flag: change "
                     "it; in a stored model: it was not written by train.py, or was edited, so train the model again.")


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DeviceOptions:
    """How this machine runs the steps: not part of the recipe (the same model trains on another
    device), recorded in the model's metadata. app/training/engine.py's `accelerate` applies them."""

    precision: str = "auto"  # auto: bf16 autocast on a CUDA GPU that has it, fp32 elsewhere; fp32; bf16
    compile: bool = False  # torch.compile the training model (a C++ compiler on CPU, Triton on GPU)
    # Stream the split from its files with this many DataLoader workers (train.py --stream), for
    # a split whose float copy does not fit in memory; None: held in memory (the faster default).
    stream: int | None = None


def stream_workers() -> int:
    """--stream's default worker count: a worker per core, one left for the training steps, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class CheckpointOptions:
    """How often a run saves its resumable state (a `checkpoint` artifact) and how many it
    keeps: like DeviceOptions, not part of the recipe (the same training, saved more or less often)."""

    every: int = 1  # epochs between checkpoints (and always after the last); 0: none
    keep: int = 2  # newest checkpoint versions kept while the run trains (the `best` one is kept too)
    keep_after: bool = False  # keep them once the run has logged its model (else deleted: the model holds the best weights)


# What a recipe logged before a key existed means: the training it describes did without.
LEGACY = {"weight_decay": 0.0, "warmup": 0.0, "schedule": "constant", "label_smoothing": 0.0, "augment": "none"}


def from_flags(arch: str, epochs: int | None, given: dict) -> TrainConfig:
    """Defaults for `arch`, overridden by the flags that were given (not None); checked before any run."""
    values = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(values) - set(hyperparameter_names(arch)))
    if unknown:
        raise UserError(f"{', '.join(unknown)} do(es) not apply to --arch {arch}; drop the flag(s).")
    config = TrainConfig(arch=arch, epochs=epochs, **values)
    check_model_settings(arch, config.model)
    return config


# The default training length, in optimizer steps: the epochs are chosen from the training split's
# size so that a run takes about this many (at least MIN_EPOCHS, at most MAX_EPOCHS). Measured
# (docs/performance.md): the default convnet with its cosine schedule reaches 99% on MNIST-shaped
# digits and 98% on digits in about 200 steps, its training accuracy at 1.00 well before the end.
# An augmented split is a new variant of itself every epoch and learns slower: on colour sets
# unlike make_shapes' (benchmarks/colour_sets.py), 200 steps ended with training accuracy at
# 0.6-0.8, still climbing. AUGMENTED_STEP_BUDGET is measured with the convnet's `augmented`
# defaults (batch 32; "The colour defaults"): 1,600 steps, as many images as 800 at batch 64,
# gave the objects 0.93 where 800 gave 0.91.
STEP_BUDGET = 200
AUGMENTED_STEP_BUDGET = 1600
AUGMENTED_DEFAULTS_ARCH = "convnet"  # the architecture the `augmented` defaults were measured on
MIN_EPOCHS, MAX_EPOCHS = 3, 100
LEGACY_EPOCHS = 5  # the original's, for a dataset or a recipe that does not say


def step_budget(augment: str | None) -> int:
    return STEP_BUDGET if augment in (None, "none") else AUGMENTED_STEP_BUDGET


def epochs_for_budget(train_size: int, batch_size: int, world_size: int = 1, augment: str | None = "none") -> int:
    """Epochs of about `step_budget(augment)` steps over `train_size` samples (batch_size per process)."""
    steps_per_epoch = max(1, math.ceil(train_size / (batch_size * world_size)))
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(step_budget(augment) / steps_per_epoch)))


def with_dataset_defaults(config: TrainConfig, dataset_metadata: dict, world_size: int = 1,
                          unset: Collection[str] = ()) -> TrainConfig:
    """The defaults that depend on the data, taken from the dataset artifact's metadata before
    the run's config is logged: augment (data_prep records none, crop-flip or crop-flip-grey); on
    an augmented split, the default convnet's `augmented` defaults for the hyperparameters named in
    `unset` (those no flag gave: a locked recipe, as --retrain's, passes none); and the epochs of
    the step budget (from the training split's size, the batch size and the augmentation; the
    recipe records the count, so --retrain trains as long)."""
    augment = config.augment or dataset_metadata.get("augment", "none")
    if augment != "none" and config.arch == AUGMENTED_DEFAULTS_ARCH:
        config = replace(config, **{f.name: f.metadata["augmented"] for f in hyperparameter_fields(config.arch)
                                    if f.name in unset and f.metadata["augmented"] is not None})
    epochs = config.epochs
    if epochs is None:
        train_size = (dataset_metadata.get("split_sizes") or {}).get("train")
        epochs = (epochs_for_budget(train_size, config.batch_size, world_size, augment) if train_size
                  else LEGACY_EPOCHS)
    return replace(config, augment=augment, epochs=epochs)


def unset_flags(given: dict) -> set[str]:
    """The hyperparameters a flag dict (name -> value, None when not given) leaves to their defaults."""
    return {name for name in hyperparameter_names() if given.get(name) is None}


def trial_epochs(arch: str, dataset_metadata: dict) -> int:
    """The epochs of every trial of a sweep whose file names none (--tune fixes them in the sweep;
    a `wandb agent` trial of a file without `epochs` takes them itself): the step budget's at the
    plain default batch size (64), on one process. Hyperband compares trials at the same epoch,
    which is then the same share of every trial's training and the same point of its schedule;
    with each trial's own budget (epochs from its batch size) a batch-128 trial had done a quarter
    of a batch-32 trial's steps at epoch 1 and epoch ranks told nothing of final ranks
    (benchmarks/bench_sweep.py, docs/performance.md). The budget is that of a split without
    augmentation (STEP_BUDGET), also on an augmented one: trials are ranked at a quarter of the
    augmented budget's cost (its images), and --retrain trains the candidate to the full one (the
    original's "retrain on more epochs before evaluating")."""
    return with_dataset_defaults(from_flags(arch, None, {"augment": "none"}), dataset_metadata).epochs


def retrain_epochs(candidate: TrainConfig, dataset_metadata: dict) -> int:
    """--retrain's epochs when --epochs is not given: the dataset's full step budget for the
    candidate's batch size, and never fewer than the candidate's own count. A sweep trial run with
    fewer epochs (--tune --epochs 2) is so trained to the budget, the candidate "trained on more
    epochs before it is evaluated" of the original's retrain; one already at its budget trains as long."""
    budget = with_dataset_defaults(replace(candidate, epochs=None), dataset_metadata).epochs
    return max(candidate.epochs, budget)
