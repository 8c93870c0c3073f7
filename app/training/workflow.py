"""One training job inside a run: data artifact in, model artifact out.

Shared by the baseline, --retrain and every sweep trial, so all three log the same keys
and carry the same recipe. `run` is an app.tracking.Run; nothing here imports wandb.
"""
from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from app import model_card, names
from app.data import memory
from app.data.split_files import read_split
from app.errors import UserError
from app.models import build, load_pretrained
from app.models.files import save_model
from app.progress import say
from app.recipe import DatasetRef, InputSpec, Recipe
from app.recipe.config import CheckpointOptions, DeviceOptions, TrainConfig
from app.training import distributed, engine
from app.training.checkpoint import CheckpointKeeper
from app.training.cores import CoreShare, shared_cores


def code_version() -> str | None:
    """The git commit of this checkout, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def declare_metrics(run) -> None:
    run.define_metric("epoch")
    for key in names.EPOCH_METRICS:
        run.define_metric(key, step_metric="epoch")


@dataclass
class TrainingData:
    """A split's train and validation parts, normalised: on the device (engine.Tensors) or streamed
    from the split's files (streaming.Stream), and its class count."""

    train: engine.Tensors
    val: engine.Tensors
    num_classes: int

    @property
    def input_shape(self) -> list[int]:
        return self.train.sample_shape  # (C, H, W)


def load_training_data(dataset_version, device, spec: InputSpec, stream: int | None = None) -> TrainingData:
    """The split in memory on the device, or with `stream` (DataLoader workers) read from its
    files (one per split, or shards) batch by batch (app/training/streaming.py): only the labels
    are loaded."""
    split = read_split(dataset_version.path, mapped=True, ref=dataset_version.ref)  # the files' headers checked, nothing read yet
    if stream is None:  # the fast path, where the split fits
        memory.check_training_fits({s: split.images[s].shape for s in ("train", "val")}, torch.device(device))
        from app.data.loading import decode_workers, read_whole

        # a split of references is decoded by a pool of DataLoader workers; files are read here
        parts = {s: engine.to_tensors(read_whole(split.images[s], decode_workers()), split.labels[s], device,
                                      spec) for s in ("train", "val")}
    else:
        from app.training.streaming import Stream

        parts = {s: Stream(split.images[s], split.labels[s], device, spec, stream)
                 for s in ("train", "val")}
    return TrainingData(train=parts["train"], val=parts["val"], num_classes=len(split.class_names))


def train(
    config: TrainConfig,
    data: TrainingData,
    *,
    init_state: dict | None = None,
    on_epoch: engine.EpochCallback | None = None,
    progress: bool = True,
    options: DeviceOptions = DeviceOptions(),
    group: distributed.Group = distributed.Group(),
    checkpoint: engine.Checkpointing | None = None,
    cores: CoreShare | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train `config` on `data`: the one training call of the baseline, sweep trials, --retrain
    and benchmarks/bench_quality.py. Returns the model (the best validation epoch's weights)
    and one metrics dict per epoch. `options`: mixed precision and torch.compile (engine.accelerate).
    On the CPU it shares the machine's cores with other trainings (app/training/cores.py):
    through `cores` where the caller registered it, else registered here."""
    device = data.train.device
    with contextlib.nullcontext(cores) if cores is not None else shared_cores(device) as cores:
        engine.seed_everything(config.seed)
        model = build(config.arch, data.input_shape, data.num_classes, config.model)
        if init_state is not None:
            model.load_state_dict(init_state)
        elif checkpoint is None or checkpoint.resume is None:  # a resumed run has its own weights
            load_pretrained(config, model)
        model = engine.prepare(model, device)
        history = engine.fit(model, data.train, data.val, config, on_epoch=on_epoch, progress=progress, group=group,
                             acceleration=engine.accelerate(options, device, model), checkpoint=checkpoint,
                             cores=cores)
    return model, history


def train_and_log(
    run,
    recipe: Recipe,
    *,
    dataset_version,
    device: torch.device,
    extra_metadata: dict,
    aliases: list[str] = (),
    init_state: dict | None = None,
    should_stop: Callable[[dict], bool] | None = None,
    options: DeviceOptions = DeviceOptions(),
    group: distributed.Group = distributed.Group(),
    checkpoints: CheckpointOptions = CheckpointOptions(),
    resume_state: dict | None = None,
    announce: bool = True,
):
    """Train `recipe` (its configuration, on its input) on the dataset version, log per-epoch
    metrics and the model, which carries the recipe.

    Every `checkpoints.every` epochs the training state is logged as `checkpoint-<run id>`
    (CheckpointKeeper decides which versions stay); `resume_state` (one of them, loaded) continues
    that training. `announce`: say what trains on
    what (a sweep's agent has said it for its trial: then only with -v).

    Returns (model artifact version or None when a sweep stopped the trial, history).
    """
    config = recipe.config
    data = load_training_data(dataset_version, device, recipe.input, options.stream)
    declare_metrics(run)

    best = {"val/best_accuracy": 0.0, "val/best_loss": float("inf")}
    stopped = {"early": False}

    def on_epoch(record: dict) -> bool:
        best["val/best_accuracy"] = max(best["val/best_accuracy"], record["val/accuracy"])
        best["val/best_loss"] = min(best["val/best_loss"], record["val/loss"])
        run.log({**record, **best})
        stopped["early"] = bool(should_stop and should_stop({**record, **best}))
        return stopped["early"]

    keeper = CheckpointKeeper(run, recipe, checkpoints, extra_metadata)
    checkpoint = engine.Checkpointing(save=keeper.save, every=checkpoints.every, resume=resume_state)
    with shared_cores(device) as cores:  # registered first, so the line says this training's share
        cpu_threads = torch.get_num_threads()
        threads = f" ({cpu_threads} thread{'s' if cpu_threads > 1 else ''})" if device.type == "cpu" else ""
        say(f"training {config.arch} on {dataset_version.ref} ({len(data.train)} images) on {device}{threads}",
            verbose_only=not announce)
        started = time.monotonic()
        model, history = train(config, data, init_state=init_state, on_epoch=on_epoch, options=options, group=group,
                               checkpoint=checkpoint, cores=cores)
        seconds = round(time.monotonic() - started, 1)
    # The model holds the weights of its best validation epoch (engine.fit keeps them), so its
    # metrics are that epoch's: the score a sweep ranks it by is the score its weights have.
    kept = engine.best_epoch(history)
    saved = history[kept - 1]
    metrics = {
        "train_loss": saved["train/loss"], "train_accuracy": saved["train/accuracy"],
        "val_loss": saved["val/loss"], "val_accuracy": saved["val/accuracy"],
        "best_val_accuracy": best["val/best_accuracy"], "best_val_loss": best["val/best_loss"],
        "best_epoch": kept, "epochs_trained": len(history),
    }
    run.summary({"epochs_trained": len(history), "best_epoch": kept})
    if stopped["early"]:  # a sweep stopped it: done, nothing to resume
        keeper.finish()
        return None, history

    metadata = {
        **recipe.to_dict(),
        "seed": config.seed,
        "metrics": metrics,
        "code_version": code_version(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "summary": str(model),
        "world_size": group.world_size,  # processes that trained it (torchrun), batch_size each
        "trained_on": {"device": device.type, **engine.accelerate(options, device, model).describe()},
        # the learning curves, so evaluate.py's report shows how the model trained, offline too
        "history": {key: [r[key] if key == "epoch" else round(float(r[key]), 6) for r in history]
                    for key in names.LEARNING_CURVES},
        **extra_metadata,
    }
    collection = names.model_artifact(recipe.dataset.name, recipe.arch)
    card = model_card.training_card(recipe, metadata, dataset_version.metadata, collection)
    # after the card: what differs from run to run stays out of the model's files (model_card.py)
    metadata.update(training_seconds=seconds, run=run.lineage_entry())
    with tempfile.TemporaryDirectory() as tmp:
        files = save_model(model, recipe, Path(tmp))
        files[model_card.CARD_FILE] = Path(tmp) / model_card.CARD_FILE
        files[model_card.CARD_FILE].write_text(card, encoding="utf-8")
        logged = run.log_artifact(collection, names.MODEL_TYPE, files, metadata, aliases, description=card)
    keeper.finish()
    return logged, history


def repeats_candidate(candidate_metadata: dict, epochs: int, device: torch.device, options: DeviceOptions) -> bool:
    """Whether --retrain (from scratch) would train what the candidate already is: its recipe
    (locked), its dataset version, as many epochs, in one process on the same kind of device and
    precision. The seed is the recipe's, so such a retrain logs the same model again (on the CPU bit
    for bit; on a GPU within its nondeterminism) and adds nothing."""
    trained_on = candidate_metadata.get("trained_on") or {}
    return (candidate_metadata.get("epochs") == epochs and candidate_metadata.get("world_size", 1) == 1
            and trained_on.get("device") == device.type
            and trained_on.get("precision") == engine.precision(options, device))


def recipe_for(config: TrainConfig, dataset_version) -> Recipe:
    """What a model trained with `config` on this dataset version will carry: the data's input
    (as the architecture takes it: app/models.model_input), its classes and the version itself."""
    from app.models import model_input

    metadata = dataset_version.metadata
    name = metadata.get("dataset")
    if not name:
        raise UserError(f"{dataset_version.ref} has no 'dataset' in its metadata; log it with data_prep.py.")
    return Recipe(config, model_input(config.arch, InputSpec.from_dataset_metadata(metadata)),
                  tuple(metadata["class_names"]), DatasetRef(dataset_version.ref, dataset_version.digest, name))
