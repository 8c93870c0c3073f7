"""data_prep.py end to end through the real script, offline, network unreachable."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SCRIPTS, leet_records


def test_same_inputs_one_version_new_seed_second_version(workspace):
    first = workspace.run("data_prep", "--dataset", "digits")
    assert "digits-split:v0" in first.stdout
    # Without WANDB_BASE_URL the host is read from the SDK's setup (as `wandb login --host` saved
    # it); that setup does not outlive the mode pinned after it: no warning that environment
    # variables "will be ignored".
    host_from_sdk = {k: v for k, v in workspace.env.items() if k != "WANDB_BASE_URL"}
    again = workspace.run("data_prep", "--dataset", "digits", env=host_from_sdk)
    assert "wandb: WARNING" not in again.stderr, again.stderr
    assert "digits-split:v0" in again.stdout
    assert len(workspace.versions("digits-split")) == 1
    workspace.run("data_prep", "--dataset", "digits", "--seed", "7")
    versions = workspace.versions("digits-split")
    assert [v["version"] for v in versions] == ["v0", "v1"]
    assert "latest" in versions[1]["aliases"] and "latest" not in versions[0]["aliases"]
    meta = versions[1]["metadata"]
    assert meta["seed"] == 7 and meta["split_sizes"] == {"train": 1257, "val": 360, "test": 180}
    assert meta["duplicates_across_splits"] == 0 and meta["image_shape"] == [28, 28]
    assert sum(meta["class_counts"]["test"]) == 180
    assert versions[1]["logged_by"]["job_type"] == "data_prep"


def test_offline_run_is_readable_by_wandbs_own_tools(workspace):
    workspace.run("data_prep", "--dataset", "digits")
    [run_dir] = workspace.run_dirs()
    records = leet_records(run_dir)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["job_type"] == "data_prep"
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    dataset = next(a for a in artifacts if a.get("name") == "digits-split")
    assert dataset["type"] == "dataset"
    assert dataset["digest"] == workspace.versions("digits-split")[0]["digest"]
    files = [f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]]
    assert any("label_distribution" in f and f.endswith(".png") for f in files)
    assert any("label_counts" in f and f.endswith(".table.json") for f in files)
    assert any("gallery" in f and f.endswith(".table.json") for f in files)


def test_four_concurrent_runs_with_four_seeds_leave_four_versions(workspace):
    procs = [subprocess.Popen([sys.executable, str(SCRIPTS / "data_prep.py"), "--dataset", "digits", "--seed", str(s)],
                              cwd=workspace.path, env=workspace.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for s in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    versions = workspace.versions("digits-split")
    assert sorted(v["version"] for v in versions) == ["v0", "v1", "v2", "v3"]
    assert sorted(v["metadata"]["seed"] for v in versions) == [0, 1, 2, 3]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["--dataset", "digits", "--train_val_test_size", "70", "20", "20"], "summing to 100"),
    (["--dataset", "digits", "--fraction", "0"], "percentage in (0, 100]"),
    (["--dataset", "digits", "--fraction", "150"], "percentage in (0, 100]"),
    (["--dataset", "mnist", "--data-dir", "nowhere"], "--dataset digits"),
])
def test_bad_input_is_refused_and_changes_nothing(workspace, args, message):
    before = workspace.store_snapshot()
    proc = workspace.run("data_prep", *args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert workspace.store_snapshot() == before


def test_both_size_spellings_and_help(workspace):
    proc = workspace.run("data_prep", "--dataset", "digits", "--train-val-test-size", "60", "20", "20", "--fraction", "50")
    assert "digits-split:v0" in proc.stdout
    assert workspace.versions("digits-split")[0]["metadata"]["train_val_test_size"] == [60, 20, 20]
    assert "--train_val_test_size" in workspace.run("data_prep", "--help").stdout


def test_registry_refuses_unknown_refs_and_lists_what_exists(workspace):
    workspace.run("data_prep", "--dataset", "digits")
    proc = workspace.run("registry", "alias", "digits-split:nope", "x", check=False)
    assert proc.returncode == 2 and "latest -> v0" in proc.stderr
    proc = workspace.run("registry", "link", "nothing:v0", "c", "--alias", "a", check=False)
    assert proc.returncode == 2 and "Existing: digits-split" in proc.stderr
    proc = workspace.run("registry", "list", "bad::ref", check=False)
    assert proc.returncode == 2
