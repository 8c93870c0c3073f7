"""The offline W&B settings of a benchmark's throwaway runs: everything W&B and the pipeline write
(the runs, the pipeline's store, W&B's artifact cache and config, and the copy W&B's SDK stages of
every file an offline run logs, kept for `wandb sync`) goes under the benchmark's own temporary
folder and is removed with it. W&B's default place for the staged copies is ~/.local/share/wandb:
there, runs that nobody would sync left 72 GB on this VM in two days of benchmarks (2026-12-08)."""
from __future__ import annotations

import os
from pathlib import Path


def folders(workdir: Path | str) -> dict[str, str]:
    """Every folder W&B and the pipeline write to (and the netrc W&B reads a key from), under
    `workdir`; tests/conftest.py's hermetic environment takes the same."""
    workdir = Path(workdir)
    return {"WANDB_DIR": str(workdir), "WANDB_CACHE_DIR": str(workdir / ".wandb-cache"),
            "WANDB_CONFIG_DIR": str(workdir / ".wandb-config"), "WANDB_DATA_DIR": str(workdir / ".wandb-data"),
            "NETRC": str(workdir / "no-netrc"), "PIPELINE_STORE_DIR": str(workdir / "artifact-store")}


def offline_settings(workdir: Path | str) -> dict[str, str]:
    """The W&B and pipeline variables of an offline run whose files all stay under `workdir`."""
    return {"WANDB_MODE": "offline", "WANDB_SILENT": "true", **folders(workdir)}


def offline_env(workdir: Path | str, **extra: str) -> dict[str, str]:
    """This process's environment for a script's process: its own W&B and pipeline variables left
    out (a key or a project of the user's must not reach a benchmark), offline_settings and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PIPELINE_"))}
    return {**env, **offline_settings(workdir), **extra}
