"""The hand-off layer: the only package that imports wandb.

Scripts start a run, `use` their inputs inside it and `log_artifact` their outputs, so W&B
lineage shows dataset -> training run -> model -> evaluation run, online or offline.
"""
from app.tracking.backends import ArtifactVersion
from app.tracking.refs import Ref, parse_ref
from app.tracking.session import Run, SilentRun, backend, start_run

__all__ = ["ArtifactVersion", "Ref", "Run", "SilentRun", "backend", "parse_ref", "start_run"]
