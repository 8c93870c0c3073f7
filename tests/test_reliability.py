"""Faults: killed writers, many writers, damaged files, killed training, a full disk."""
from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.errors import UserError
from conftest import SCRIPTS
from test_store import FakeRun, log, log_concurrently, make_backend


def assert_consistent(root: Path) -> int:
    """Every listed version opens and verifies; aliases point at listed versions. Returns the count."""
    backend = make_backend(root)
    versions = backend.list()
    for v in versions:
        assert backend.use(FakeRun(), v.ref, None).path.is_dir()
    for coll in backend.store.collections():
        numbers = [v["version"] for v in coll["versions"]]
        assert numbers == list(range(len(numbers)))  # no gaps
        assert all(0 <= v < len(numbers) for v in coll["aliases"].values())
    return len(versions)


def _write_forever(root: str, seed: int) -> None:
    backend = make_backend(Path(root))
    tmp = Path(root).parent / f"writer-{seed}"
    rng = random.Random(seed)
    for i in range(10_000):
        log(backend, tmp, rng.randbytes(200_000) + str(i).encode(), aliases=["hot"])


@pytest.mark.slow
def test_writers_killed_at_random_points_never_leave_a_half_version(tmp_path):
    root = tmp_path / "store"
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(0)
    for kill in range(20):
        writer = ctx.Process(target=_write_forever, args=(str(root), kill))
        writer.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert_consistent(root)
    before = assert_consistent(root)
    log(make_backend(root), tmp_path / "after", b"the next write succeeds")
    assert assert_consistent(root) == before + 1
    leftovers = list((root / "tmp").iterdir())
    assert leftovers == []  # staging of dead writers is cleaned by the next write


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    root = tmp_path / "store"
    # eight writers, six distinct contents: exactly six versions by digest dedup, no gaps
    assert log_concurrently(root, [f"payload-{i % 6}".encode() for i in range(8)]) == [0] * 8
    assert assert_consistent(root) == 6


def test_disk_full_is_a_clear_error_and_the_store_stays_intact(tmp_path, monkeypatch):
    backend = make_backend(tmp_path / "store")
    log(backend, tmp_path, b"first")

    class FullDisk:
        """shutil as the store sees it, on a disk with no space left (wandb's own copies still work)."""

        rmtree = staticmethod(shutil.rmtree)

        @staticmethod
        def copyfile(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("app.tracking.store.shutil", FullDisk)
    with pytest.raises(UserError, match="No space left on device"):
        log(backend, tmp_path, b"second")
    monkeypatch.undo()
    assert assert_consistent(tmp_path / "store") == 1
    assert backend.peek("things:latest").version == 0
    assert log(backend, tmp_path, b"second").version == 1


def test_damaged_version_names_its_file_and_others_still_work(trained_copy):
    trained = trained_copy
    [dataset] = trained.versions("digits-split")
    damaged = trained.store / "objects" / dataset["digest"] / "val_labels.npy"
    original = damaged.read_bytes()
    try:
        damaged.write_bytes(original[:-4] + b"XXXX")
        proc = trained.run("train", "--dataset", "digits", "--epochs", "1", check=False)
        assert proc.returncode == 2 and "val_labels.npy" in proc.stderr
        assert trained.run("registry", "list").returncode == 0
    finally:
        damaged.write_bytes(original)


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGKILL])
def test_training_killed_mid_epoch_logs_no_model_and_moves_no_alias(trained_copy, sig):
    trained = trained_copy
    before = trained.store_snapshot()
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "--dataset", "digits", "--epochs", "50"],
                            cwd=trained.path, env=trained.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        if line.startswith("epoch 1/"):
            break
    time.sleep(0.3)  # inside epoch 2
    proc.send_signal(sig)
    proc.stderr.read()
    assert proc.wait(60) != 0
    after = trained.store_snapshot()
    changed = {k for k in after if after.get(k) != before.get(k)}
    # only the dataset's lineage may change (the killed run did use it) and the killed run's
    # checkpoint appear (what --resume continues from); no model, no alias
    checkpoints = [json.loads((trained.store / k).read_text()) for k in changed if "/checkpoint-" in k]
    their_files = tuple(f"objects/{v['digest']}/" for c in checkpoints for v in c["versions"])
    assert all("digits-split" in k or "/checkpoint-" in k or k.startswith(their_files) for k in changed), changed
    assert len(trained.versions("digits-convnet")) == 1


def test_online_without_network_fails_fast_with_the_fix(workspace):
    workspace.env.update({"WANDB_MODE": "online", "WANDB_API_KEY": "f" * 40})
    start = time.monotonic()
    proc = workspace.run("data_prep", "--dataset", "digits", check=False, timeout=120)
    assert proc.returncode == 2
    assert "cannot reach W&B" in proc.stderr and "WANDB_MODE=offline" in proc.stderr
    assert time.monotonic() - start < 60  # a guard against hanging, not a speed claim
    assert workspace.store_snapshot() == {}


def test_malformed_env_file_is_refused(tmp_path):
    """app/.env lives in the package folder; test the same loader on a copy."""
    from app.tracking.settings import load_env_file

    bad = tmp_path / ".env"
    bad.write_text("WANDB_PROJECT=x\nWANDB_API_KEY\n= oops\n")
    with pytest.raises(UserError, match="malformed line"):
        load_env_file(bad)


def test_a_dataset_where_a_model_is_expected_is_refused(trained_copy):
    before = trained_copy.store_snapshot()
    proc = trained_copy.run("evaluate", "--model", "digits-split:latest", check=False)
    assert proc.returncode == 2 and "'dataset' artifact" in proc.stderr
    proc = trained_copy.run("train", "--retrain", "--model", "digits-split:v0", check=False)
    assert proc.returncode == 2 and "'model' artifact is needed" in proc.stderr
    assert trained_copy.store_snapshot() == before


def test_a_model_recipe_of_an_unknown_architecture_is_refused(trained_copy, tmp_path):
    """A model artifact whose recipe names an architecture this project does not have."""
    import json

    from app.tracking.settings import Settings
    from app.tracking.backends import OfflineBackend

    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "recipe.json").write_text(json.dumps({"arch": "vgg16", "input_shape": [1, 28, 28], "num_classes": 10,
                                                    "model": {}, "hyperparameters": {}, "dataset": {}}))
    (folder / "model.pt").write_bytes(b"not used")
    backend = OfflineBackend(Settings(mode="offline", project="wandb-image-pipeline", entity=None, model_retrain=None,
                                      model_eval=None, store_dir=trained_copy.store, base_url=""))
    backend.log(FakeRun(), "foreign-model", "model", {"recipe.json": folder / "recipe.json",
                                                       "model.pt": folder / "model.pt"}, {}, [])
    versions_before = {(v["collection"], v["version"], tuple(v["aliases"])) for v in trained_copy.registry()}
    proc = trained_copy.run("evaluate", "--model", "foreign-model:v0", check=False)
    assert proc.returncode == 2 and "unknown architecture 'vgg16'" in proc.stderr
    # no version or alias changed (lineage does record the failed run's use, as W&B would)
    assert {(v["collection"], v["version"], tuple(v["aliases"])) for v in trained_copy.registry()} == versions_before
