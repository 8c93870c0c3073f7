"""The hand-off layer: the only package that imports wandb.

Scripts start a run, `use` their inputs inside it and `log_artifact` their outputs, so W&B
lineage shows dataset -> training run -> model -> evaluation run, online or offline.

The names below load on first use (PEP 562), so `app.tracking.settings` (the .env and the mode,
read before any run) is imported without loading wandb.
"""
from importlib import import_module

_EXPORTS = {"ArtifactVersion": "backends", "Ref": "refs", "parse_ref": "refs",
            "Run": "session", "SilentRun": "session", "backend": "session", "start_run": "session"}

__all__ = sorted(_EXPORTS)

# What a process that forks W&B runs (the local sweep's warm process) imports ahead, by name, so
# that wandb stays this package's: wandb itself, through the session, and W&B's launch package,
# which wandb.init imports at every run's start to apply a launch job's inputs (1.3 s here).
# tests/test_trial_runner.py fails when wandb.init stops importing it, or the name goes away.
RUN_PRELOAD = ("app.tracking.session", "wandb.sdk.launch")


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"app.tracking.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'app.tracking' has no attribute {name!r}")
