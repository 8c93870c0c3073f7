"""train.py under torchrun (DDP, gloo on CPU, 2 processes): one run, one model (the same one
streamed or in memory), sweeps of torchrun trials, and a failing rank."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from conftest import SCRIPTS, runs_of, small_sweep, sweep_state

BIN = Path(sys.executable).parent


def torchrun(ws, *args, env=None):
    return subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(SCRIPTS / "train.py"),
                           *args], cwd=ws.path, env={**ws.env, **(env or {})}, capture_output=True, text=True,
                          timeout=600)


def test_torchrun_logs_one_run_and_one_model_that_evaluate_reads_and_streaming_logs_the_same(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits", "--shard-size", "300")  # train: 5 shards, val 2, test 1
    # global batch 64 either way: 2 processes of 32, or one of 64 (a narrow convnet: what is compared
    # is the two, not the width)
    flags = ("--device", "cpu", "--epochs", "3", "--batch_size", "32", "--width", "16", "--keep-checkpoints", "1")
    proc = torchrun(ws, "-v", *flags)
    assert proc.returncode == 0, proc.stderr
    assert "2 ranks" in proc.stderr and "digits-convnet:v0" in proc.stdout
    # rank 0 speaks: each notice once, each on its own line
    markers = ("training convnet on", "fit: ", "epoch 3/3", "W&B run (offline)", "model artifact: ")
    for marker in markers:
        assert (proc.stdout + proc.stderr).count(marker) == 1, (marker, proc.stderr)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert all(line.startswith(m) for line in lines for m in markers if m in line), proc.stderr  # none run together
    [model] = ws.versions("digits-convnet")
    assert model["metadata"]["world_size"] == 2
    assert len(runs_of(ws, "train")) == 1  # rank 1 started no W&B run
    checkpoints = ws.versions(f"checkpoint-{model['logged_by']['id']}")  # rank 0 saved them, for that run
    assert [c["metadata"]["epoch"] for c in checkpoints][-1] == 3 and len(checkpoints) <= 2
    [dataset] = ws.versions("digits-split")
    assert [u["id"] for u in dataset["used_by"]] == [model["logged_by"]["id"]]  # one use, by rank 0's run

    # --stream under torchrun: each rank reads only its own share of each epoch's order from the
    # split's shards (tests/test_streaming.py checks the share), with spawned DataLoader workers; the
    # model is the in-memory job's, bit for bit (same digest, no new version)
    streamed = torchrun(ws, *flags, "--stream", "1")
    assert streamed.returncode == 0, streamed.stderr
    assert "digits-convnet:v0" in streamed.stdout and len(ws.versions("digits-convnet")) == 1

    ws.run("train", "--epochs", "3", "--batch_size", "64", "--width", "16")
    single = ws.versions("digits-convnet")[1]["metadata"]["metrics"]["val_accuracy"]
    distributed = model["metadata"]["metrics"]["val_accuracy"]
    assert distributed >= single - 0.03, (distributed, single)  # as good, within noise

    import torch

    state = torch.load(ws.store / "objects" / model["digest"] / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in state)  # the plain module's weights
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "to_evaluate")
    out = ws.run("evaluate", "--no-generate-images").stdout
    assert "evaluated wandb-registry-model/digits-convnet:v0" in out


def test_a_rank_that_fails_ends_the_job_and_logs_no_model(workspace, tmp_path):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    hook = tmp_path / "hook"
    hook.mkdir()
    # test-only: rank 1's first all-reduce of an epoch's metrics raises
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import torch.distributed as dist\n"
        "    def failing(*args, **kwargs):\n"
        "        raise RuntimeError('injected failure in rank 1')\n"
        "    dist.all_reduce = failing\n")
    proc = torchrun(ws, "--device", "cpu", "--epochs", "3", "--width", "8", env={"PYTHONPATH": str(hook)})
    assert proc.returncode != 0
    assert "injected failure in rank 1" in proc.stderr and "Traceback" in proc.stderr  # the quiet rank's error shows
    assert ws.versions("digits-convnet") == []


def test_retrain_under_torchrun_is_refused_with_the_reason(trained_copy):
    proc = torchrun(trained_copy, "--retrain")
    assert proc.returncode != 0 and "--retrain, --tune and --resume run as one process" in proc.stderr


def test_an_offline_sweep_of_torchrun_trials(workspace, tmp_path):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    path = small_sweep(tmp_path, early_terminate=None, command=[
        "${env}", "torchrun", "--standalone", "--nproc_per_node=2", "${program}", "${args_no_boolean_flags}"])
    env = {**ws.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # the venv active, as the README says
    proc = subprocess.run([sys.executable, str(SCRIPTS / "train.py"), "--tune", "--max_sweep", "2",
                           "--sweep-config", str(path)], cwd=ws.path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    trials = sweep_state(ws)["trials"]
    assert [t["state"] for t in trials] == ["finished", "finished"]
    assert len(runs_of(ws, "sweep_trial")) == 2  # one W&B run per trial, not per process
    models = ws.versions("digits-convnet")
    assert len(models) == 2 and all(m["metadata"]["world_size"] == 2 for m in models)
    assert "candidate:" in proc.stdout
