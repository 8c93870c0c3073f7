"""train.py's jobs, one function per mode, each from its request to its closing summary:

- baseline.py `train_baseline`: plain training (alone, a sweep's trial, or a torchrun rank);
- retrain.py `retrain_candidate`: the registry's candidate with its locked recipe -> `to_evaluate`;
- resume.py `resume_stopped_run`: a stopped baseline or retrain, where it stopped (every step of
  resuming is there);
- `--tune` is app/tuning/run.py's `tune`.

train.py turns its flags into a `TrainRequest` and calls one of them; nothing here parses flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from app.recipe.config import CheckpointOptions, DeviceOptions


@dataclass(frozen=True)
class TrainRequest:
    """What train.py's flags ask of a job; None: not given (the job's default applies)."""

    arch: str | None = None
    dataset: str | None = None
    data: str | None = None  # dataset artifact ref
    epochs: int | None = None
    hyperparameters: dict = field(default_factory=dict)  # flag -> value given, or None
    device: str = "auto"  # auto, cpu, cuda
    options: DeviceOptions = DeviceOptions()
    checkpoints: CheckpointOptions = CheckpointOptions()
    model: str | None = None  # --retrain: the candidate's ref
    warm_start: bool = False  # --retrain: from the candidate's weights
    resume: str | None = None  # --resume: the run id, "" for the newest stopped run


def report(logged, history) -> None:
    """The closing line every training job prints: the model artifact and its kept epoch."""
    from app.training.engine import best_epoch

    kept = best_epoch(history)
    saved = history[kept - 1]
    print(f"model artifact: {logged.ref if logged else '(none: the sweep stopped this trial)'}  "
          f"epochs {len(history)}, weights of epoch {kept} (best validation): val accuracy "
          f"{saved['val/accuracy']:.4f}, val loss {saved['val/loss']:.4f}")
