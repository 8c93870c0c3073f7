"""Sweeps on W&B's server: create, run trials through the `wandb agent` CLI, rank.

Each trial runs in its own process (the agent starts the sweep's `command`): W&B's
maintainers advise against in-process agents, which leak state and GPU memory.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import wandb

from app.errors import UserError
from app.tracking.settings import Settings


def create_sweep(config: dict, settings: Settings) -> str:
    return wandb.sweep(config, project=settings.project, entity=settings.entity)


def sweep_path(sweep_id: str, settings: Settings) -> str:
    """ENTITY/PROJECT/ID; a --sweep-id given in that form (as `wandb sweep` prints it) is kept."""
    if sweep_id.count("/") == 2:
        return sweep_id
    entity = settings.entity or wandb.Api().default_entity
    return f"{entity}/{settings.project}/{sweep_id}"


def run_agent(path: str, count: int | None) -> int:
    """`wandb agent [--count N] ENTITY/PROJECT/ID`, the same command a person runs elsewhere;
    without a count the agent runs until the server says the sweep is done (its run_cap)."""
    cli = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    return subprocess.run([cli, "agent", *(["--count", str(count)] if count else []), path]).returncode


def ranking(path: str, metric: dict) -> list[dict]:
    """Finished and stopped trials with their metric and logged model, best first."""
    sweep = wandb.Api().sweep(path)
    rows = []
    for run in sweep.runs:
        value = run.summary.get(metric["name"])
        if not isinstance(value, (int, float)):
            continue
        models = [a for a in run.logged_artifacts() if a.type == "model"]
        rows.append({
            "name": run.name, "state": run.state, "summary": {metric["name"]: value},
            "params": {k: v for k, v in run.config.items() if not k.startswith("_")},
            "model_ref": f"{models[-1].name}" if models else None,
        })
    if not rows:
        raise UserError(f"sweep {path} has no trial with {metric['name']!r} yet.")
    return sorted(rows, key=lambda r: r["summary"][metric["name"]], reverse=metric["goal"] == "maximize")
