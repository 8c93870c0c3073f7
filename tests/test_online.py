"""The same contract against real W&B: runs only with credentials and network (skipped otherwise)."""
from __future__ import annotations

import os
import uuid

import pytest

pytestmark = [
    pytest.mark.online,
    pytest.mark.skipif(not os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "offline",
                       reason="needs WANDB_API_KEY and network"),
]


def test_online_backend_versions_dedup_and_aliases(tmp_path, monkeypatch):
    from app import settings as settings_module
    from app.tracking import start_run

    monkeypatch.setattr(settings_module, "_settings", None)
    monkeypatch.setenv("WANDB_PROJECT", os.environ.get("WANDB_PROJECT", "wandb-image-pipeline-tests"))
    name = f"contract-{uuid.uuid4().hex[:8]}"
    payload = tmp_path / "f.bin"
    payload.write_bytes(b"contract")
    with start_run("contract_test", {}) as run:
        first = run.log_artifact(name, "dataset", {"f.bin": payload}, {"n": 1})
    with start_run("contract_test", {}) as run:
        again = run.log_artifact(name, "dataset", {"f.bin": payload}, {"n": 1})
        used = run.use(f"{name}:latest", "dataset")
    assert first.ref == again.ref == f"{name}:v0"
    assert (used.path / "f.bin").read_bytes() == b"contract"
