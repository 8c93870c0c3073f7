"""Local sweep trials: each its own process, as `python <program> <args>` would run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app.tracking import RUN_PRELOAD
from app.tuning.trial_runner import WARM_MODULES, run_trial

PROBE = """
import atexit, json, os, sys
out = os.environ["PROBE_OUT"]
record = {"pid": os.getpid(), "argv": sys.argv, "name": __name__, "marker": os.environ.get("PROBE_MARKER"),
          "stray": os.environ.get("PROBE_STRAY"), "warm": sorted(m for m in {warm!r} if m in sys.modules),
          "wandb": "wandb" in sys.modules,
          "threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None}
with open(out, "w") as f:
    json.dump(record, f)
atexit.register(lambda: open(out + ".atexit", "w").close())
action = sys.argv[1] if len(sys.argv) > 1 else ""
if action == "--exit=3":
    sys.exit(3)
if action == "--raise":
    raise RuntimeError("a crashing trial")
if action == "--kill":
    os.kill(os.getpid(), 9)
"""


@pytest.fixture
def probe(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE.replace("{warm!r}", repr(WARM_MODULES)))
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if k != "PROBE_STRAY"}
    env.update(PROBE_OUT=str(out), PROBE_MARKER="trial-7")
    return script, out, env


def test_a_trial_runs_warm_in_its_own_process_with_its_own_argv_and_environment(probe, monkeypatch):
    script, out, env = probe
    monkeypatch.setenv("PROBE_STRAY", "not for the trial")  # in this process, not in the trial's env
    assert run_trial([sys.executable, str(script), "--lr=0.01"], env) == 0
    record = json.loads(out.read_text())
    assert record["pid"] != os.getpid()
    assert record["argv"] == [str(script), "--lr=0.01"]
    assert record["name"] == "__main__"
    assert record["marker"] == "trial-7" and record["stray"] is None
    assert record["warm"] == sorted(WARM_MODULES)  # imported before the trial's code ran
    assert record["wandb"]  # wandb itself too (app.tracking alone loads it only on first use)
    assert (out.parent / "out.json.atexit").exists()  # atexit handlers run, as at an interpreter exit


def test_a_warm_trial_trains_with_the_threads_its_environment_gives(probe):
    """The warm process loaded torch with its own thread count; a trial given OMP_NUM_THREADS in
    its environment runs with that, as a fresh process would."""
    script, out, env = probe
    for threads in (3, 1):  # one of them differs from the warm process's own count
        assert run_trial([sys.executable, str(script)], {**env, "OMP_NUM_THREADS": str(threads)}) == 0
        assert json.loads(out.read_text())["threads"] == threads


@pytest.mark.parametrize("flag, code", [("--exit=3", 3), ("--raise", 1), ("--kill", -9)])
def test_a_trial_reports_its_exit_code_and_the_agent_survives(probe, flag, code):
    script, out, env = probe
    assert run_trial([sys.executable, str(script), flag], env) == code
    assert out.exists()


def test_other_commands_run_as_a_plain_subprocess(probe):
    script, out, env = probe
    assert run_trial([sys.executable, "-u", str(script)], env) == 0
    record = json.loads(out.read_text())
    assert record["warm"] == [] and not record["wandb"]  # a cold process


def test_a_runs_start_imports_the_wandb_modules_the_warm_process_preloads(tmp_path):
    """RUN_PRELOAD names W&B's launch package because wandb.init imports it at every run's start
    and `import wandb` does not. When a wandb release changes either, this fails: update the list."""
    names = [name for name in RUN_PRELOAD if name.startswith("wandb")]
    code = (f"import sys, wandb\n"
            f"before = [n for n in {names!r} if n in sys.modules]\n"
            f"run = wandb.init(mode='offline', dir=sys.argv[1])\n"
            f"run.finish()\n"
            f"print(before, [n for n in {names!r} if n not in sys.modules])\n")
    env = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert names and out.strip().splitlines()[-1] == "[] []", out
