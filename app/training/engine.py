"""The training engine: plain torch, no W&B, callable from tests and benchmarks.

Speed comes from the data path: the split lives on the training device as one tensor,
batches are index slices of a `randperm`, loss and correct counts accumulate as tensors,
and the host reads them (`.item()`) once per epoch. The model side is in app/models/layers.py.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.errors import UserError, summary
from app.progress import detail
from app.training import distributed
from app.training.augment import augment_batch
from app.training.cores import CoreShare
from app.inference import EVAL_BATCH, as_float, logits
from app.recipe import InputSpec
from app.recipe.config import DeviceOptions, TrainConfig
from app.training.optimizer import make_optimizer, make_schedule



class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stopped rather than logging a broken model."""


@dataclass
class Tensors:
    """One split on the device: float images (N, C, H, W), normalised, and int64 labels. The
    in-memory data source; app/training/streaming.py's Stream is the other, with the same methods."""

    images: torch.Tensor
    labels: torch.Tensor
    spec: InputSpec | None = None  # the normalisation the images had (crop-flip-grey's greyscale needs it)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def sample_shape(self) -> list[int]:
        return list(self.images.shape[1:])  # (C, H, W)

    def batches(self, order: torch.Tensor, batch_size: int):
        """(images, labels) of each `batch_size` chunk of `order`, as index slices on the device."""
        order = order.to(self.images.device)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self.images[index], self.labels[index]

    def in_order(self, batch_size: int):
        """The images in their order, `batch_size` at a time (views: nothing is copied)."""
        for start in range(0, len(self), batch_size):
            yield self.images[start:start + batch_size]


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto.")
    return torch.device(requested)


def to_tensors(images: np.ndarray, labels: np.ndarray, device: torch.device,
               spec: InputSpec | None = None) -> Tensors:
    """uint8 (N, H, W) or (N, H, W, C) -> float (N, C, H, W) in [0, 1] on the device, once; then
    normalised with the input spec's per-channel mean and std (app/recipe)."""
    x = as_float(torch.from_numpy(np.ascontiguousarray(images)).to(device), spec)
    return Tensors(images=x, labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device), spec=spec)


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on the device, in the default (NCHW) layout. A model-wide channels_last was
    measured 10-15% slower for the CNN on the CPU: its 32->64 convolution runs fastest in NCHW,
    and the layers that gain from channels_last switch to it internally (app/models/layers.py)."""
    return model.to(device)


@dataclass(frozen=True)
class Acceleration:
    """What the training steps use on this device (DeviceOptions, resolved by `accelerate`)."""

    autocast: torch.dtype | None = None  # mixed precision of the forward pass and the loss
    channels_last: bool = False  # NHWC weights and batches: convolutions on a GPU's tensor cores
    compile: bool = False  # the training model through torch.compile

    def describe(self) -> dict:
        """For the model's metadata (`trained_on`)."""
        return {"precision": "bf16" if self.autocast == torch.bfloat16 else "fp32",
                "channels_last": self.channels_last, "compile": self.compile}


def accelerate(options: DeviceOptions, device: torch.device, model: nn.Module) -> Acceleration:
    """bf16 autocast and channels_last on a CUDA GPU with bf16 (tensor cores; PyTorch's advice for
    convolutions, not yet measured by this project on a GPU); on the CPU neither (bf16 autocast
    ran 13x slower on this project's CPU, and the CNN's convolutions run fastest in NCHW there:
    see `prepare`), unless --precision bf16 asks for it; channels_last on the CPU for a model that
    says it gains from it (`channels_last_on_cpu`: the convnet). --compile wherever it is asked for."""
    cuda = device.type == "cuda"
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    nhwc = convolutional and (cuda or getattr(model, "channels_last_on_cpu", False))
    return Acceleration(autocast=torch.bfloat16 if precision(options, device) == "bf16" else None,
                        channels_last=nhwc, compile=options.compile)


def precision(options: DeviceOptions, device: torch.device) -> str:
    """The precision the steps run in on `device`, "bf16" or "fp32" (see accelerate)."""
    cuda = device.type == "cuda"
    bf16_here = torch.cuda.is_bf16_supported() if cuda else True
    if options.precision == "bf16" and not bf16_here:
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use --precision fp32.")
    return "bf16" if options.precision == "bf16" or (options.precision == "auto" and cuda and bf16_here) else "fp32"


def predict_logits(model: nn.Module, data: Tensors, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The outputs for a split (in memory or streamed), through inference's own forward pass."""
    return torch.cat([logits(model, images) for images in data.in_order(batch_size)])


# Training images whose BatchNorm statistics are recomputed after each epoch (recompute_batchnorm):
# 256 gave the same epoch-1 validation accuracy as all 1,257 of digits' (5 seeds, within 1 point).
BATCHNORM_SAMPLE = 512


def recompute_batchnorm(model: nn.Module, train, batch_size: int, sample: int = BATCHNORM_SAMPLE) -> None:
    """The BatchNorm layers' running statistics, recomputed for the epoch's final weights from the
    first `sample` training images as evaluation sees them (no augmentation): PyTorch's
    torch.optim.swa_utils.update_bn, the "precise BN" of fvcore and timm. The running averages
    kept while training mix the statistics of weights that changed fast within the epoch: after
    epoch 1 of the default convnet on digits they gave 10-18% validation accuracy where the
    weights scored 75-79% in training (5 seeds); recomputed, 93-95%. Every rank uses the same
    images, so the statistics agree under torchrun. Models without BatchNorm are left alone."""
    order = torch.arange(min(len(train), sample))
    with torch.no_grad():
        torch.optim.swa_utils.update_bn((images for images, _ in train.batches(order, batch_size)), model)


def evaluate(model: nn.Module, data: Tensors) -> dict[str, float]:
    logits = predict_logits(model, data)
    loss = F.cross_entropy(logits, data.labels).item()
    accuracy = (logits.argmax(1) == data.labels).float().mean().item()
    return {"loss": loss, "accuracy": accuracy}


# An epoch callback gets the epoch's metrics and returns True to stop training early
# (a sweep controller's hyperband decision).
EpochCallback = Callable[[dict], bool]


def fit(
    model: nn.Module,
    train: Tensors,
    val: Tensors,
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    keep_best: bool = True,
    acceleration: Acceleration = Acceleration(),
    group: distributed.Group = distributed.Group(),
    checkpoint: Checkpointing | None = None,
    cores: CoreShare | None = None,
) -> list[dict]:
    """Train `config`'s recipe: AdamW (app/training/optimizer.py: `lr` is the peak of a warm-up
    then `schedule`) and cross-entropy with `label_smoothing`, `epochs` passes of `batch_size`
    batches in the order `seed` draws; returns one metrics dict per epoch.

    `augment` (app/training/augment.py) transforms training batches only; evaluation sees the
    images as they are. Metric keys are the ones logged to W&B: train/loss, train/accuracy, val/loss, val/accuracy.
    With keep_best, the model ends with the weights of `best_epoch(history)`, the epoch whose
    validation accuracy a sweep ranks it by, not merely the last epoch's.

    Under torchrun (`group.active`), the model trains as DistributedDataParallel: every rank
    draws the same seeded permutation and takes its own equal-length shard of it (as
    DistributedSampler does, padded so all ranks take the same number of steps); `batch_size`
    is per process. Losses and correct counts are summed over ranks; every rank evaluates the
    same weights on the whole validation split, and rank 0's `on_epoch` decides for all.
    `model` stays the plain module (its state_dict has no DDP or torch.compile prefix).

    `acceleration` (see `accelerate`): training steps under bf16 autocast, in channels_last, or
    through torch.compile; evaluation runs the plain module in fp32.

    `checkpoint` (see Checkpointing): every `every` epochs (and after the last) rank 0 hands
    `save` the whole training state (`training_state`); with `resume`, a state saved so,
    training continues after that epoch exactly as if it had never stopped (on the CPU at the same
    thread count, the same weights bit for bit: the batch order's and torch's random states are
    part of it).

    `cores` (app/training/cores.py): between steps, this training takes its share of the CPU cores
    again as other trainings on the machine start and end.
    """
    device = train.device
    if acceleration.channels_last:
        model.to(memory_format=torch.channels_last)
    trained = model
    if group.active:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    eager = trained
    if acceleration.compile:
        trained = torch.compile(trained)
    mixed = (lambda: torch.autocast(device.type, dtype=acceleration.autocast)) if acceleration.autocast \
        else contextlib.nullcontext
    lr, batch_size, epochs, augment = config.lr, config.batch_size, config.epochs, config.augment or "none"
    # Fine-tuning pretrained weights: the new classifier alone first, then the rest at a lower rate.
    fine_tuning = config.pretrained and hasattr(model, "backbone_parameters")
    backbone = {id(p) for p in model.backbone_parameters()} if fine_tuning else None
    optimizer = make_optimizer(model, lr, config.weight_decay, backbone)
    shuffle = torch.Generator().manual_seed(config.seed)  # batches follow the seed, not the global RNG
    n = len(train)
    shard = math.ceil(n / group.world_size)  # samples per rank and epoch
    steps = math.ceil(shard / batch_size)
    scheduler = make_schedule(optimizer, steps * epochs, config.warmup, config.schedule,
                              *((config.head_only, config.backbone_lr) if fine_tuning else ()))
    if progress:  # printed right before the first step (benchmarks/bench_startup.py times it)
        ranks = f" per rank, {group.world_size} ranks" if group.active else ""
        speedups = [name for name, on in (("bf16 autocast", acceleration.autocast), ("channels_last",
                    acceleration.channels_last), ("torch.compile", acceleration.compile)) if on]
        detail(f"fit: {n} samples, {steps} steps per epoch{ranks}, {epochs} epochs"
               + (f" ({', '.join(speedups)})" if speedups else ""))

    def step(module: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        """Forward, loss and backward of one batch (through `module`: the trained or the eager one)."""
        with mixed():
            logits = module(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
        loss.backward()
        return logits, loss

    history = []
    best_state, best_accuracy = None, -1.0
    first = 1
    if checkpoint is not None and checkpoint.resume is not None:
        state = checkpoint.resume
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        shuffle.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history, best_state, best_accuracy = list(state["history"]), state["best_state"], state["best_accuracy"]
        first = state["epoch"] + 1
        if progress and group.is_main:
            print(f"resumed after epoch {state['epoch']}/{epochs}", file=sys.stderr, flush=True)
    for epoch in range(first, epochs + 1):
        started = time.perf_counter()
        trained.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        order = torch.randperm(n, generator=shuffle)
        if group.active:  # this rank's shard, padded from the start to the same length on every rank
            order = torch.cat([order, order[:shard * group.world_size - n]])[group.rank::group.world_size]
        bar = step_bar(steps, epoch, epochs, batch_size * group.world_size) if progress and group.is_main else None
        for images, labels in train.batches(order, batch_size):
            if cores is not None:
                cores.adjust()
            images = augment_batch(images, augment, train.spec)
            if acceleration.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad()  # to None: backward writes fresh gradients
            try:
                logits, loss = step(trained, images, labels)
            except Exception as err:
                retry = (lambda: step(eager, images, labels)) if acceleration.compile else None
                failure = step_failure(err, batch_size, retry_eagerly=retry)
                if failure is None:
                    raise
                raise failure from err
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        seen = len(order) * group.world_size
        distributed.all_reduce_sum(group, loss_sum)
        distributed.all_reduce_sum(group, correct)
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(
                f"the training loss became {train_loss} in epoch {epoch}; no model was logged. "
                f"Lower the learning rate (now {lr})."
            )
        recompute_batchnorm(model, train, batch_size)  # what evaluation (and the saved model) will use
        val_metrics = evaluate(model, val)
        if not math.isfinite(val_metrics["loss"]):  # e.g. normalisation statistics gone bad: no model to keep
            raise NonFiniteLoss(
                f"the validation loss became {val_metrics['loss']} in epoch {epoch} (training loss {train_loss:.4f}); "
                f"no model was logged. Lower the learning rate (now {lr}), or check the starting weights."
            )
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "train/loss": train_loss,
            "train/accuracy": correct.item() / seen,
            "val/loss": val_metrics["loss"],
            "val/accuracy": val_metrics["accuracy"],
            "samples_per_second": seen / seconds,
        }
        history.append(record)
        improved = record["val/accuracy"] > best_accuracy  # strictly: the first best epoch wins
        if keep_best and improved:
            best_accuracy = record["val/accuracy"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if progress and group.is_main:
            print(
                f"epoch {epoch}/{epochs}  train loss {train_loss:.4f} acc {record['train/accuracy']:.4f}  "
                f"val loss {record['val/loss']:.4f} acc {record['val/accuracy']:.4f}  "
                f"({seconds:.1f} s, {record['samples_per_second']:.0f} samples/s)",
                file=sys.stderr,
                flush=True,
            )
        stop = on_epoch(record) if on_epoch is not None and group.is_main else False
        if distributed.broadcast(group, stop):
            break
        if checkpoint is not None and checkpoint.due(epoch, epochs) and group.is_main:
            checkpoint.save(training_state(epoch, model, optimizer, scheduler, shuffle, history, best_state,
                                           best_accuracy), improved)
    if best_state is not None:
        model.load_state_dict(best_state)
    if acceleration.channels_last:
        model.to(memory_format=torch.contiguous_format)
    return history


@dataclass
class Checkpointing:
    """engine.fit's checkpoints: `save(state, is_best)` every `every` epochs and after the last
    (0: never); `resume`: a state to continue from (training_state, loaded back)."""

    save: Callable[[dict, bool], None]
    every: int = 1
    resume: dict | None = None

    def due(self, epoch: int, epochs: int) -> bool:
        return self.every > 0 and (epoch % self.every == 0 or epoch == epochs)


def training_state(epoch, model, optimizer, scheduler, shuffle, history, best_state, best_accuracy) -> dict:
    """Everything the next epoch depends on, as tensors and plain values (loads with
    weights_only=True): weights, AdamW's moments, the schedule's step, the batch order's and
    torch's random states, and the best epoch so far with its weights."""
    cuda = next(model.parameters()).device
    return {
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "shuffle_rng": shuffle.get_state(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(cuda) if cuda.type == "cuda" else None,
        "history": history, "best_state": best_state, "best_accuracy": best_accuracy,
    }


def step_failure(err: Exception, batch_size: int, retry_eagerly: Callable[[], object] | None) -> Exception | None:
    """What a failed training step is, for the user: out of memory is named as such with its fix;
    under --compile, the same step run once more without torch.compile tells the compiler's
    failure (the eager step works) from the model's own error (it fails again: that error, as
    itself). None: raise `err` as it is."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return UserError(f"out of memory in a training step ({summary(err)}); lower --batch-size (now {batch_size}) "
                         "or --image-size.")
    if retry_eagerly is None:
        return None
    try:
        retry_eagerly()
    except Exception as own:  # the model's own error: not the compiler's
        return step_failure(own, batch_size, None) or own
    return UserError(f"--compile: torch.compile failed ({summary(err)}); "
                     "train without --compile (on the CPU it needs a C++ compiler, on a GPU Triton).")


class StepBar:
    """An epoch's steps as a bar on a terminal: steps, samples/s and time left (tqdm). Off a
    terminal there is none: the one line per epoch is the progress (CI, `wandb agent` logs)."""

    def __init__(self, steps: int, epoch: int, epochs: int, samples_per_step: int):
        from tqdm import tqdm

        self.samples_per_step = samples_per_step
        self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False, file=sys.stderr,
                        dynamic_ncols=True)

    def update(self) -> None:
        self.bar.update()
        rate = self.bar.format_dict.get("rate")
        if rate and self.bar.n % 10 == 0:
            self.bar.set_postfix_str(f"{rate * self.samples_per_step:.0f} samples/s", refresh=False)

    def close(self) -> None:
        self.bar.close()


def step_bar(steps: int, epoch: int, epochs: int, samples_per_step: int) -> StepBar | None:
    from app.progress import on_terminal

    return StepBar(steps, epoch, epochs, samples_per_step) if on_terminal() else None


def best_epoch(history: list[dict]) -> int:
    """The epoch (1-based) with the highest validation accuracy, the first one on ties."""
    accuracies = [h["val/accuracy"] for h in history]
    return accuracies.index(max(accuracies)) + 1


def seed_everything(seed: int) -> None:
    """Weights and dropout draw from torch's global RNG; on the CPU this makes runs identical."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
