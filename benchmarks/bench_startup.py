"""Start-up: `--help` of every script, and process start to the first training step of a trial.

    python benchmarks/bench_startup.py [--repeats 3]

The trial is timed until the engine prints "fit: ..." (right before its first step), in
a temp dir with an offline store holding the digits split, as a local sweep trial runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("data_prep", "train", "evaluate", "registry", "predict")


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_BASE_URL": "http://unreachable.invalid",
               "PIPELINE_STORE_DIR": f"{tmp}/store", "WANDB_DIR": tmp, "WANDB_SILENT": "true"}
        baseline = statistics.median(timed([sys.executable, "-c", "pass"], env, tmp) for _ in range(args.repeats))
        print(f"python interpreter start: {baseline:.2f} s")
        for script in SCRIPTS:
            seconds = statistics.median(timed([sys.executable, str(REPO / f"app/pipelines/{script}.py"), "--help"], env, tmp)
                                        for _ in range(args.repeats))
            print(f"{script}.py --help: {seconds:.2f} s")
        subprocess.run([sys.executable, str(REPO / "app/pipelines/data_prep.py"), "--dataset", "digits"],
                       env=env, cwd=tmp, capture_output=True, check=True)
        first = [time_to_first_step(env, tmp) for _ in range(args.repeats)]
        print(f"train.py (a trial) from process start to its first step: {statistics.median(first):.2f} s "
              f"(runs: {', '.join(f'{s:.2f}' for s in first)})")


if __name__ == "__main__":
    main()
