"""Secrets never reach a log, a config, an artifact or argv; untrusted files are refused."""
from __future__ import annotations

import subprocess

from conftest import REPO

FAKE_KEY = "fakekey-0123456789abcdef0123456789abcdef"


def test_api_key_is_found_nowhere_after_a_full_offline_pipeline(workspace, tmp_path):
    workspace.env.update({"WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline"})
    workspace.run("data_prep", "--dataset", "digits")
    workspace.run("train", "--dataset", "digits", "--epochs", "1", "--width", "8")
    workspace.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "candidate")
    workspace.run("train", "--dataset", "digits", "--retrain", "--epochs", "1")
    workspace.run("evaluate", "--dataset", "digits", "--promote")
    scanned = 0
    for path in workspace.path.rglob("*"):
        if path.is_file():
            scanned += 1
            assert FAKE_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
    assert scanned > 50 and (workspace.path / "wandb").is_dir() and workspace.store.is_dir()


def test_env_file_is_ignored_and_the_example_holds_no_secret():
    ignored = subprocess.run(["git", "check-ignore", "app/.env"], cwd=REPO, capture_output=True, text=True)
    assert ignored.returncode == 0
    for line in (REPO / "app" / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert value == "", f"{key} has a value in .env.example"
