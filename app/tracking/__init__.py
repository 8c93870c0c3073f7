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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"app.tracking.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'app.tracking' has no attribute {name!r}")
