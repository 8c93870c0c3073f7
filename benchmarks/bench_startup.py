"""Start-up: `--help` of every script, and the time from a trial's start to its first step.

    python benchmarks/bench_startup.py [--repeats 3]

Timed until the engine prints "fit: ..." (right before its first step), in a temp dir with
an offline store holding the digits split:
- a standalone `train.py` process, as `wandb agent` starts each trial (all imports cold);
- the trials of a local sweep (`train.py --tune`), which are forked from a process that
  has done the imports once (app/tuning/trial_runner.py): from the agent's "--- trial N"
  line to that trial's first step.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offline_runs import offline_env

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("data_prep", "train", "evaluate", "registry", "predict", "serve")


def timed(argv, env, cwd) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - start


def time_to_first_step(env, cwd) -> float:
    argv = [sys.executable, str(REPO / "app/pipelines/train.py"), "--dataset", "digits", "--epochs", "1"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        if line.startswith("fit: "):
            elapsed = time.perf_counter() - start
            break
    else:
        raise RuntimeError("train.py ended before its first step")
    proc.kill()
    proc.wait()
    return elapsed


def local_sweep_trials(env, cwd, trials: int) -> tuple[list[float], float]:
    argv = [sys.executable, str(REPO / "app/pipelines/train.py"), "--tune", "--dataset", "digits", "--epochs", "1",
            "--max_sweep", str(trials), "--no-link", "--sweep-config", str(REPO / "sweep.yaml")]
    start = launched = time.perf_counter()
    agent_to_first = None
    seconds = []
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("--- trial "):
            launched = time.perf_counter()
        elif line.startswith("fit: "):
            now = time.perf_counter()
            seconds.append(now - launched)
            agent_to_first = agent_to_first or now - start
    if proc.wait() != 0 or len(seconds) != trials:
        raise RuntimeError(f"the local sweep failed (exit {proc.returncode}, {len(seconds)} of {trials} trials)")
    return seconds, agent_to_first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = offline_env(tmp, WANDB_BASE_URL="http://unreachable.invalid")
        baseline = statistics.median(timed([sys.executable, "-c", "pass"], env, tmp) for _ in range(args.repeats))
        print(f"python interpreter start: {baseline:.2f} s")
        for script in SCRIPTS:
            seconds = statistics.median(timed([sys.executable, str(REPO / f"app/pipelines/{script}.py"), "--help"], env, tmp)
                                        for _ in range(args.repeats))
            print(f"{script}.py --help: {seconds:.2f} s")
        subprocess.run([sys.executable, str(REPO / "app/pipelines/data_prep.py"), "--dataset", "digits"],
                       env=env, cwd=tmp, capture_output=True, check=True)
        first = [time_to_first_step(env, tmp) for _ in range(args.repeats)]
        print(f"standalone train.py process (as `wandb agent` starts a trial), start to first step: "
              f"{statistics.median(first):.2f} s (runs: {', '.join(f'{s:.2f}' for s in first)})")
        to_first_step, agent_to_first = local_sweep_trials(env, tmp, trials=args.repeats + 1)
        print(f"local sweep trial (forked from the warm process), launch to first step: "
              f"{statistics.median(to_first_step):.2f} s (trials: {', '.join(f'{s:.2f}' for s in to_first_step)}); "
              f"the agent's own start to its first trial's first step: {agent_to_first:.2f} s")


if __name__ == "__main__":
    main()
