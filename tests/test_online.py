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
    from app.tracking import settings as settings_module
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


def test_the_whole_flow_online(tmp_path):
    """data_prep -> train -> --tune (2 trials) -> --retrain -> evaluate --promote -> registry ->
    predict against real W&B, then the registry's state through wandb.Api()."""
    import subprocess
    import sys

    import numpy as np
    import wandb
    from PIL import Image

    from conftest import SCRIPTS

    project = f"{os.environ.get('WANDB_PROJECT', 'wandb-image-pipeline-tests')}-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "WANDB_PROJECT": project, "WANDB_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}

    def run(script, *args):
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{script} {args}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    run("data_prep", "--dataset", "digits")
    run("train", "--epochs", "2")
    run("train", "--tune", "--max_sweep", "2", "--epochs", "1")
    run("train", "--retrain")
    out = run("evaluate", "--promote", "--no-generate-images")
    assert "promoted to wandb-registry-model/digits-convnet:" in out
    listing = run("registry", "list", "wandb-registry-model/digits-convnet")
    assert "production" in listing and "candidate" in listing and "to_evaluate" in listing
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
    run("predict", str(tmp_path / "x.png"))

    api = wandb.Api()
    production = api.artifact("wandb-registry-model/digits-convnet:production")
    to_evaluate = api.artifact("wandb-registry-model/digits-convnet:to_evaluate")
    assert production.source_qualified_name == to_evaluate.source_qualified_name
    evaluation_run = next(r for r in api.runs(project) if r.job_type == "evaluate")
    used = {a.type for a in evaluation_run.used_artifacts()}
    assert {"model", "dataset"} <= used


def test_an_offline_history_moves_to_wandb_with_sync_and_push(tmp_path):
    """Offline flow, `wandb sync`, `registry.py push`; then inputs and aliases through wandb.Api()."""
    import subprocess
    import sys
    from pathlib import Path

    import wandb

    from conftest import SCRIPTS, make_workspace

    project = f"{os.environ.get('WANDB_PROJECT', 'wandb-image-pipeline-tests')}-push-{uuid.uuid4().hex[:6]}"
    ws = make_workspace(tmp_path / "ws", WANDB_PROJECT=project)
    ws.run("data_prep", "--dataset", "digits")
    ws.run("train", "--epochs", "1")
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "candidate")
    ws.run("train", "--retrain", "--epochs", "1")
    ws.run("evaluate", "--promote", "--no-generate-images")
    online = {**os.environ, "WANDB_PROJECT": project, "PIPELINE_STORE_DIR": str(ws.store)}
    online.pop("WANDB_MODE", None)
    wandb_cli = str(Path(sys.executable).with_name("wandb"))
    for run_dir in ws.run_dirs():
        subprocess.run([wandb_cli, "sync", "--project", project, str(run_dir)], env=online, check=True, timeout=600)
    push = subprocess.run([sys.executable, str(SCRIPTS / "registry.py"), "push"], cwd=ws.path, env=online,
                          capture_output=True, text=True, timeout=600)
    assert push.returncode == 0, push.stderr
    api = wandb.Api()
    evaluation_run = next(r for r in api.runs(project) if r.job_type == "evaluate")
    assert {a.type for a in evaluation_run.used_artifacts()} >= {"model", "dataset"}
    offline_production = next(v for v in ws.versions("wandb-registry-model/digits-convnet") if "production" in v["aliases"])
    assert api.artifact("wandb-registry-model/digits-convnet:production").digest == offline_production["digest"]
