"""Start a local sweep trial: its own process, forked from a warm one where that is possible.

A trial process spends most of its start-up importing torch (about 2 s) and wandb (0.5 s).
multiprocessing's forkserver imports them once, in a server process started when the
agent starts; every trial is forked from it and starts at its own code. Each
trial is still a separate process that runs the sweep's program as `python <program> <args>`
would (runpy, as `__main__`) and ends with its own exit code, so a crashing trial leaves
the agent running, and a trial that `wandb agent` starts elsewhere runs the same code.

Commands that are not `<this python> <script.py> ...`, and platforms without forkserver,
run as a plain subprocess.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
from typing import Callable

from app.tracking import RUN_PRELOAD

# What a train.py trial imports before its first step (with them torch, numpy and wandb);
# the server imports them once. app.tracking loads wandb only on first use, so it names what
# a run's start needs (RUN_PRELOAD). A name a later wandb lacks is skipped (the forkserver
# ignores ImportError) and tests/test_trial_runner.py's warm test fails.
WARM_MODULES = ["app.jobs.baseline", "app.training.workflow", *RUN_PRELOAD, "app.tuning.warm"]


def start_warm_process() -> None:
    """Start the server now, so that its imports overlap the agent's own set-up."""
    if _warm_context() is not None:
        from multiprocessing import forkserver

        forkserver.ensure_running()


def run_trial(argv: list[str], env: dict[str, str], on_start: Callable[[int], None] | None = None) -> int:
    """Run one trial to its end; returns its exit code (negative: killed by that signal).
    `on_start(pid)` is called as soon as the trial's process exists (the controller records it)."""
    context = _warm_context()
    python_script = len(argv) >= 2 and argv[0] == sys.executable and argv[1].endswith(".py")
    if context is None or not python_script:
        process = subprocess.Popen(argv, env=env)
        if on_start:
            on_start(process.pid)
        try:
            return process.wait()
        except KeyboardInterrupt:
            _let_it_close(lambda: process.wait(INTERRUPT_GRACE_S), process.pid)
            raise
    process = context.Process(target=_run_program, args=(argv[1], argv[2:], env), name="sweep-trial")
    process.start()
    if on_start:
        on_start(process.pid)
    try:
        process.join()
    except KeyboardInterrupt:
        _let_it_close(lambda: process.join(INTERRUPT_GRACE_S), process.pid)
        raise
    return process.exitcode


INTERRUPT_GRACE_S = 30  # how long an interrupted agent waits for its trial to close its W&B run


def _let_it_close(wait, pid: int) -> None:
    """Ctrl-C reaches the trial too (one process group); a SIGTERM sent to the agent alone is
    passed on to it. Then wait until it has closed its run and said so, so the agent's own
    message comes last."""
    from app.errors import TERMINATED

    if TERMINATED["by_signal"]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        wait()
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        pass


def _warm_context():
    """multiprocessing's forkserver context with WARM_MODULES preloaded; None where the
    platform has no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WARM_MODULES)
    return context


def _run_program(program: str, args: list[str], env: dict[str, str]) -> None:
    """In the forked trial process: what `python program args` does, with `env` as its environment."""
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [program, *args]
    from app.training.cores import fixed_threads  # the warm process has loaded torch

    threads = fixed_threads()
    if threads:
        # OpenMP read the variable when the warm process loaded torch; a trial given another count
        # in its environment sets it as a fresh `python program` would have started with.
        import torch

        torch.set_num_threads(threads)
    try:
        runpy.run_path(program, run_name="__main__")
    finally:
        # multiprocessing ends the process with os._exit, which skips atexit handlers;
        # an interpreter exit runs them (wandb's among them), so run them here.
        atexit._run_exitfuncs()
