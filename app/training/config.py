"""One training run's configuration (imports no torch: train.py's --help reads its defaults): what train.py takes as flags, a sweep may set, and the
model artifact keeps (as its recipe's `hyperparameters`, `epochs` and `model`), so a later
script rebuilds the exact model, preprocessing and training from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from app import names
from app.cli import positive_int
from app.errors import UserError


def option(default, help: str, **flag):
    """A training field and its train.py flag: `help` documents both; `flag` adds argparse's
    type or choices where the annotation's type is not enough."""
    return field(default=default, metadata={"help": help, **flag})


@dataclass
class TrainConfig:
    arch: str = "cnn"  # app/models/: cnn (the original's), mlp, resnet
    epochs: int = 5  # passes over the training split; the best validation epoch's weights are kept
    lr: float = option(1e-3, "peak learning rate of AdamW")
    batch_size: int = option(64, "samples per step (per process under torchrun)", type=positive_int)
    weight_decay: float = option(1e-4, "AdamW's decoupled weight decay (biases and norms: none)")
    warmup: float = option(0.05, "share of all steps warming the learning rate up linearly from 0")
    schedule: str = option("constant", "learning rate after warm-up (cosine: to 0 at the last step)",
                           choices=names.SCHEDULES)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing")
    augment: str | None = option(None, "training-batch augmentation: random crop with padding, and mirroring "
                                 "with crop-flip (default: the dataset's: none for digits/MNIST-like sets, "
                                 "crop-flip for colour sets)", choices=names.AUGMENTATIONS)
    seed: int = option(0, "seed of weights, dropout, augmentation and batch order", type=int)
    model: dict = field(default_factory=dict)  # the architecture's own: app/models/<arch>.py DEFAULTS

    # Keys that are not flat hyperparameters in the recipe.
    STRUCTURE = ("arch", "epochs", "model")

    def hyperparameters(self) -> dict:
        """The flat dict a recipe keeps, train.py's flags and a sweep's parameters."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.STRUCTURE}
        return {**flat, **self.model}

    @classmethod
    def training_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in cls.STRUCTURE)

    @classmethod
    def add_flags(cls, group) -> None:
        """train.py's flag for every training field: its help, type or choices, and its default
        named in the help (the flag itself defaults to None: "not given", so --retrain can tell
        a changed value from the candidate's own)."""
        for f in fields(cls):
            if f.name in cls.STRUCTURE:
                continue
            flag = {k: v for k, v in f.metadata.items() if k != "help"}
            if "choices" not in flag:
                flag.setdefault("type", {"float": float, "int": int}[f.type])
            default = "" if f.default is None else f" (default {f.default})"
            group.add_argument(f"--{f.name}", help=f.metadata["help"] + default, **flag)


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DeviceOptions:
    """How this machine runs the steps: not part of the recipe (the same model trains on another
    device), recorded in the model's metadata. app/training/engine.py's `accelerate` applies them."""

    precision: str = "auto"  # auto: bf16 autocast on a CUDA GPU that has it, fp32 elsewhere; fp32; bf16
    compile: bool = False  # torch.compile the training model (a C++ compiler on CPU, Triton on GPU)


# What a recipe logged before a key existed means: the training it describes did without.
LEGACY = {"weight_decay": 0.0, "warmup": 0.0, "schedule": "constant", "label_smoothing": 0.0, "augment": "none"}


def from_flags(arch: str, epochs: int, given: dict) -> TrainConfig:
    """Defaults for `arch`, overridden by the flags that were given (not None)."""
    from app.models import check_model_settings, model_defaults  # torch: when a run is configured, not for --help

    model = model_defaults(arch)
    known = {*TrainConfig.training_keys(), *model}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in known)
    if unknown:
        raise UserError(f"{', '.join(unknown)} do(es) not apply to --arch {arch}; drop the flag(s).")
    values = {k: v for k, v in given.items() if v is not None}
    model = {k: values.get(k, d) for k, d in model.items()}
    check_model_settings(arch, model)  # dense=10**9 is refused here, before any run starts
    return TrainConfig(arch=arch, epochs=epochs, model=model,
                       **{k: values[k] for k in TrainConfig.training_keys() if k in values})


def from_recipe(recipe: dict) -> TrainConfig:
    """The configuration a model artifact's recipe was trained with (older recipes: LEGACY)."""
    hyper = recipe.get("hyperparameters")
    if not isinstance(hyper, dict):
        raise UserError("the model carries no recipe hyperparameters: it was not logged by train.py.")
    model = dict(recipe.get("model", {}))
    training = {k: hyper.get(k, LEGACY.get(k, getattr(TrainConfig, k))) for k in TrainConfig.training_keys()}
    return TrainConfig(arch=recipe["arch"], epochs=int(recipe.get("epochs") or TrainConfig.epochs), model=model,
                       **training)


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    return replace(config, epochs=epochs)
