"""The in-process runner (tests/in_process.py) answers as the script's own process does, and
leaves the test's process as it found it."""
from __future__ import annotations

import os
import sys

import pytest


@pytest.mark.parametrize("argv", [
    ("registry", "list"),  # an empty store: a message, exit 0
    ("train", "--epochs", "0"),  # argparse's usage error: exit 2
    ("evaluate",),  # nothing to evaluate: our UserError, exit 2
    ("data_prep", "--help"),
])
def test_a_run_in_this_process_prints_and_exits_as_its_own_process_does(workspace, argv):
    script, *args = argv
    before = (dict(os.environ), os.getcwd(), list(sys.argv))
    here = workspace.run(script, *args, check=False, process=False)
    assert (dict(os.environ), os.getcwd(), list(sys.argv)) == before
    alone = workspace.run(script, *args, check=False, process=True)
    assert (here.returncode, here.stdout, here.stderr) == (alone.returncode, alone.stdout, alone.stderr)


def test_w_and_b_reads_each_runs_environment_afresh(workspace, tmp_path):
    """Two runs with two W&B folders: each run's files land in its own (wandb.setup reads the
    environment once per process; the runner tears it down between runs)."""
    from conftest import make_workspace

    other = make_workspace(tmp_path / "other")
    for ws in (workspace, other):
        ws.run("data_prep", "--dataset", "digits", "--fraction", "20", process=False)
    assert len(workspace.run_dirs()) == len(other.run_dirs()) == 1
