"""The recipe a model artifact carries, typed: the one owner of `recipe.json`.

A Recipe is what rebuilds, feeds and explains a model: its training configuration (TrainConfig in
app/recipe/config.py: the architecture, its settings and every hyperparameter, epochs included),
its input (InputSpec: one image size, the normalisation and resize its data had), its class
names and the dataset version it learned from. Every script writes recipe.json with `save` and
reads it with `load` (or a model's metadata, which holds the same keys, with `from_dict`); the
rules for the layouts logged before this one live in `_from_legacy`, so every model ever logged
still loads. No torch here: train.py's --help and the lower layers import it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.errors import UserError
from app.recipe.config import LEGACY, LEGACY_EPOCHS, TrainConfig, hyperparameter_fields, model_fields

RECIPE_FILE = "recipe.json"
FORMAT = 2  # 1: the keys arch, input_shape, num_classes, model, hyperparameters[, preprocessing][, epochs]


@dataclass(frozen=True)
class InputSpec:
    """What a model's input is. The models take (channels, height, width) float batches; the
    stored images are uint8 (height, width[, channels]): `size` is the one image size both share."""

    channels: int
    size: tuple[int, int]  # (height, width) in pixels
    mean: tuple[float, ...]  # per channel, in [0, 1] units: the training split's (data_prep)
    std: tuple[float, ...]
    resize: str | None = None  # how data_prep brought other sizes to `size` (None: they all had it)
    invert_light_background: bool = False  # strokes-on-black data: predict inverts a light scan
    # torchvision's pretrained classifiers: the resize and normalisation their weights expect,
    # applied inside the model (app/models/zoo.py); recorded for whoever reads the recipe
    model_input: dict | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width): the models' input, channels first."""
        return (self.channels, *self.size)

    @property
    def normalises(self) -> bool:
        return any(self.mean) or any(s != 1 for s in self.std)

    @classmethod
    def plain(cls, shape, invert_light_background: bool = False) -> InputSpec:
        """An input of `shape` (channels, height, width) seen as it is: no normalisation."""
        channels, height, width = (int(d) for d in shape)
        return cls(channels, (height, width), (0.0,) * channels, (1.0,) * channels,
                   invert_light_background=invert_light_background)

    @classmethod
    def from_dataset_metadata(cls, metadata: dict) -> InputSpec:
        """A dataset artifact's (data_prep's metadata). Datasets logged before the channels were
        recorded are 28x28 greyscale digits-like sets, seen without normalisation."""
        shape = list(metadata["image_shape"])  # (height, width[, channels]), as the images are stored
        channels = int(metadata.get("channels", shape[2] if len(shape) == 3 else 1))
        return cls.from_dict({"channels": channels, "size": shape[:2], "mean": metadata.get("mean", [0.0] * channels),
                              "std": metadata.get("std", [1.0] * channels), "resize": metadata.get("resize"),
                              "invert_light_background": bool(metadata.get("light_on_dark", channels == 1))})

    def to_dict(self) -> dict:
        spec = {"channels": self.channels, "size": list(self.size), "mean": list(self.mean), "std": list(self.std),
                "resize": self.resize, "invert_light_background": self.invert_light_background}
        return {**spec, "model_input": self.model_input} if self.model_input is not None else spec

    @classmethod
    def from_dict(cls, spec: dict) -> InputSpec:
        try:
            channels = int(spec["channels"])
            height, width = (int(d) for d in spec["size"])
            return cls(channels, (height, width), tuple(float(m) for m in spec["mean"]),
                       tuple(float(s) for s in spec["std"]), spec.get("resize"),
                       bool(spec.get("invert_light_background", False)), spec.get("model_input"))
        except (KeyError, TypeError, ValueError) as err:
            raise _unreadable(f"its input {spec!r} is not channels, size (height, width), mean and std ({err})") from err


@dataclass(frozen=True)
class DatasetRef:
    """The dataset artifact version a model learned from."""

    ref: str = ""  # e.g. digits-split:v0
    digest: str = ""
    name: str = ""  # the dataset's name (digits, shapes): the model's collection is <name>-<arch>


@dataclass(frozen=True)
class Recipe:
    config: TrainConfig
    input: InputSpec
    class_names: tuple[str, ...]
    dataset: DatasetRef = field(default_factory=DatasetRef)

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def with_epochs(self, epochs: int) -> Recipe:
        return replace(self, config=replace(self.config, epochs=epochs))

    # -- recipe.json ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "arch": self.arch, "epochs": self.config.epochs,
                "hyperparameters": self.config.hyperparameters(), "input": self.input.to_dict(),
                "class_names": list(self.class_names),
                "dataset": {"ref": self.dataset.ref, "digest": self.dataset.digest, "name": self.dataset.name}}

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        """A recipe.json's content, or a model artifact's metadata (which holds its keys)."""
        if not isinstance(data, dict) or not isinstance(data.get("arch"), str):
            raise _unreadable("it names no architecture")
        version = data.get("format", 1)
        if version == 1:
            return _from_legacy(data)
        if version != FORMAT:
            raise UserError(f"the model's recipe has format {version!r}, which this version of the project does not "
                            f"know (it reads {FORMAT} and older): update the project to load it.")
        hyper = data.get("hyperparameters")
        if not isinstance(hyper, dict):
            raise _unreadable("it has no hyperparameters")
        try:
            config = TrainConfig(arch=data["arch"], epochs=int(data["epochs"]),
                                 **{f.name: hyper[f.name] for f in hyperparameter_fields(data["arch"])})
            return cls(config, InputSpec.from_dict(data["input"]), tuple(str(c) for c in data["class_names"]),
                       DatasetRef(**data.get("dataset") or {}))
        except (KeyError, TypeError, ValueError) as err:
            raise _unreadable(f"it lacks or mistypes {err}") from err

    def save(self, folder: Path) -> Path:
        path = folder / RECIPE_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> Recipe:
        path = folder / RECIPE_FILE
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as err:
            raise UserError(f"{folder} holds no {RECIPE_FILE}: it is not a model artifact of this project.") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path} is not valid JSON ({err}); log the model again.") from err

    # -- --retrain --------------------------------------------------------------------------------
    def check_locked(self, given: dict) -> None:
        """--retrain uses the candidate's own hyperparameters: a flag that changes one is an error."""
        locked = self.config.hyperparameters()
        changed = [k for k, v in given.items() if v is not None and (k not in locked or v != locked[k])]
        if changed:
            detail = ", ".join(f"{k} (recipe: {locked.get(k, 'not used')}, given: {given[k]})" for k in changed)
            raise UserError(
                f"--retrain keeps the candidate's hyperparameters; locked: {detail}. "
                "Only --epochs (and --warm-start) may be given; train a new baseline to change the rest."
            )


def _from_legacy(data: dict) -> Recipe:
    """Format 1, every model logged before the typed Recipe: `input_shape` (C, H, W) and
    `num_classes` beside `preprocessing` (from 1106ee0; before it: greyscale, no normalisation,
    light scans inverted), the architecture's settings under `model` and the rest under
    `hyperparameters` (a key logged before it existed: LEGACY, what that training did without),
    `epochs` from 97b25d8 (before it: the original's 5)."""
    arch = data["arch"]
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    hyper = data.get("hyperparameters") if isinstance(data.get("hyperparameters"), dict) else {}
    try:
        own = {f.name: model.get(f.name, hyper.get(f.name, f.default)) for f in model_fields(arch)}
        training = {f.name: hyper.get(f.name, LEGACY.get(f.name, f.default)) for f in hyperparameter_fields(arch)
                    if f.name not in own}
        config = TrainConfig(arch=arch, epochs=int(data.get("epochs") or LEGACY_EPOCHS), **training, **own)
        if "preprocessing" in data:
            spec = InputSpec.from_dict(data["preprocessing"])
        else:
            shape = data["input_shape"]
            if not (isinstance(shape, list) and len(shape) == 3):
                raise _unreadable(f"its input_shape {shape!r} is not [channels, height, width]")
            spec = InputSpec(*_plain_legacy(shape))
        classes = data.get("class_names") or [str(c) for c in range(int(data["num_classes"]))]
        return Recipe(config, spec, tuple(str(c) for c in classes), DatasetRef(**data.get("dataset") or {}))
    except (KeyError, TypeError, ValueError) as err:
        raise _unreadable(f"it lacks or mistypes {err}") from err


def _plain_legacy(shape: list) -> tuple:
    channels, height, width = shape  # unchecked: build_model refuses sizes no model can have
    return channels, (height, width), (0.0,) * channels, (1.0,) * channels, None, channels == 1


def _unreadable(why: str) -> UserError:
    return UserError(f"the model's {RECIPE_FILE} cannot be read: {why}. It was not written by train.py or was "
                     "edited; train the model again.")


