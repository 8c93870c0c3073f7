"""What a new user trips on (issue #27), each driven as a user drives the scripts: a sweep keeps
its size through Ctrl-C and resume, push --dry-run works before a login, error messages name
refs as written. (predict's lineage: test_hostile_inputs.py; the HTML report, the errors table
and --min-accuracy: test_evaluate.py; torchrun's one voice: test_distributed.py.)"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SCRIPTS, small_sweep, sweep_state


def agent_until(ws, marker: str, *args: str):
    """A `--tune` agent in its own session (as a terminal's job or a scheduler's), read until a
    line starts with `marker`: (the process, the lines read)."""
    agent = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "--tune", *args], cwd=ws.path, env=ws.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in agent.stderr:
        seen.append(line)
        if line.startswith(marker):
            break
    return agent, seen


# a long fault run (make test-slow); make test keeps test_sigterm_to_the_agent_alone...
@pytest.mark.slow
def test_an_interrupted_sweep_says_how_to_resume_once_and_keeps_its_size(workspace, tmp_path):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    config = str(small_sweep(tmp_path))  # its file says run_cap 30
    agent, seen = agent_until(ws, "epoch 1/", "--max_sweep", "3", "--epochs", "1", "--sweep-config", config)
    # trial 0 is training
    os.killpg(agent.pid, signal.SIGINT)  # Ctrl-C: the agent and its trial, one process group
    _, rest = agent.communicate(timeout=120)
    err = "".join(seen) + rest
    assert agent.returncode == 130 and "Traceback" not in err, err
    assert err.count("interrupted: local sweep") == 1, err
    resume = re.search(r"Resume it with `python \S*app/pipelines/train\.py (.*?)`", err).group(1)
    state = sweep_state(ws)
    assert state["config"]["run_cap"] == 3 and [t["state"] for t in state["trials"]] == ["failed"]

    # the printed command, as the user would paste it: --count limits this agent to one trial ...
    ws.run("train", *shlex.split(resume), "--count", "1", "--sweep-config", config)
    assert [t["state"] for t in sweep_state(ws)["trials"]] == ["failed", "finished"]
    # ... and an agent that joins with another --max_sweep is told the sweep keeps its size: 3, not 9 or 30
    joined = ws.run("train", *shlex.split(resume), "--max_sweep", "9", "--sweep-config", config)
    assert "keeps the size it was created with" in joined.stderr
    trials = sweep_state(ws)["trials"]
    assert len(trials) == 3 and [t["state"] for t in trials] == ["failed", "finished", "finished"]
    assert len(ws.versions("digits-convnet")) == 2  # the interrupted trial logged no model


def test_push_dry_run_without_a_login_shows_the_plan_and_what_it_could_not_check(trained_copy):
    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "candidate")
    before = ws.store_snapshot()
    [split] = ws.versions("digits-split")
    train_run = split["used_by"][0]["id"]
    out = ws.run("registry", "push", "--dry-run").stdout
    assert f"use   run {train_run} (train) used digits-split:v0" in out
    assert "link  wandb-registry-model/digits-convnet: link digits-convnet:v0 with candidate" in out
    assert "not checked without a login" in out
    assert f"run {train_run}: no folder offline-run-*-{train_run}" in out  # this copy holds no run folders
    refused = ws.run("registry", "push", check=False)
    assert refused.returncode == 2 and "`push --dry-run` shows the plan without a login" in refused.stderr
    assert ws.store_snapshot() == before


def test_errors_name_refs_as_written_and_one_version_reads_v0(trained_copy, tmp_path):
    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    proc = ws.run("evaluate", "--model", "wandb-registry-model/digits-convnet:nope", check=False)
    assert proc.returncode == 2
    assert ("wandb-registry-model/digits-convnet:nope does not exist: wandb-registry-model/digits-convnet has version v0 "
            "and aliases") in proc.stderr and "v0..v0" not in proc.stderr
    proc = ws.run("evaluate", "--model", "wandb-registry-model/nosuch:production", check=False)
    assert "no collection wandb-registry-model/nosuch in the model registry" in proc.stderr
    assert "Existing: wandb-registry-model/digits-convnet (model)" in proc.stderr


def group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies, ended but not yet reaped, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def test_sigterm_to_the_agent_alone_is_handled_as_ctrl_c_and_leaves_no_process(workspace, tmp_path):
    """#34: what `kill` or a job scheduler sends, to the agent's process only: its trial closes its
    run and keeps its checkpoint, the resume command is printed once, nothing of the job runs on."""
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    config = str(small_sweep(tmp_path))
    # trial 0 has saved a checkpoint (epoch 1) when its epoch 2 starts
    agent, seen = agent_until(ws, "epoch 2/", "--max_sweep", "2", "--epochs", "30", "--sweep-config", config)
    agent.send_signal(signal.SIGTERM)  # the agent's process alone, not its group
    _, rest = agent.communicate(timeout=120)
    err = "".join(seen) + rest
    assert agent.returncode == 130 and "Traceback" not in err, err
    assert err.count("interrupted: local sweep") == 1 and err.count("Resume it with `") == 1, err
    [trial] = sweep_state(ws)["trials"]
    assert trial["state"] == "failed"  # closed, not left running
    checkpoints = [v for v in ws.versions(f"checkpoint-{trial['run_id']}")]
    assert checkpoints and max(v["metadata"]["epoch"] for v in checkpoints) >= 1  # kept for the resume
    for _ in range(100):
        if not group_alive(agent.pid):
            break
        time.sleep(0.1)
    assert not group_alive(agent.pid), "a process of the sweep outlived it by 10 s"


# a long fault run (make test-slow); make test keeps test_sigterm_to_the_agent_alone...
@pytest.mark.slow
def test_sigterm_to_train_keeps_the_checkpoint_and_says_how_to_resume(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    train = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "--epochs", "30"], cwd=ws.path, env=ws.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in train.stderr:
        if line.startswith("epoch 2/"):
            break
    train.send_signal(signal.SIGTERM)
    _, err = train.communicate(timeout=120)
    assert train.returncode == 130 and "Traceback" not in err, err
    command = re.search(r"Resume it with `(python \S+ --resume (\S+))`", err)
    assert command and ws.versions(f"checkpoint-{command.group(2)}")


def test_tune_gives_every_trial_the_step_budgets_epochs_so_hyperband_compares_like_with_like(workspace):
    """#34: with sweep.yaml (no epochs in it) every trial trains the budget at the default batch
    size, 10 epochs on digits, whatever its own batch size; the sweep says so when it starts."""
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    agent, seen = agent_until(ws, "--- trial 0", "--max_sweep", "2")  # the trial's line: its parameters
    os.killpg(agent.pid, signal.SIGINT)
    agent.communicate(timeout=120)
    assert any(re.match(r"local sweep \w+ \(2 trials of 10 epochs\)", line) for line in seen), seen
    assert "'epochs': 10," in seen[-1], seen
    state = sweep_state(ws)
    assert state["config"]["parameters"]["epochs"] == {"value": 10}
    assert state["config"]["early_terminate"] == {"type": "hyperband", "min_iter": 8, "eta": 3}
