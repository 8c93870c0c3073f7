"""Run a pipeline script's `main` in the test's own process, as `python app/pipelines/X.py ARGS`
would run it, for the tests where the process boundary is not what is tested.

A script started as a process spends most of its seconds importing torch and starting; the
suite ran them ~400 times. In this process the imports are made once per pytest worker; what a
script's process would start fresh is set up and torn down around each call:
- the environment, the working directory and sys.argv are the run's own, and restored after;
- stdout and stderr are captured; an exit (sys.exit, argparse's usage errors) becomes the
  return code, an uncaught exception a traceback on stderr and code 1, as Python does;
- Python's default warning filters apply and warnings print to the captured stderr (pytest's
  own filters would swallow them, and tests assert that a run prints none);
- W&B's process-wide setup (`wandb.teardown()`, public API: it reads the environment once per
  process), our settings, backend and bucket-client caches, the interrupt state, SIGTERM's
  handler and the temporary folder are reset.

What still needs a process of its own (`needs_process`): runs that start other processes whose
output the test reads (a sweep's trials, streaming DataLoader workers), torchrun ranks, the
server, and any run a test gives a timeout (in a process it can be killed; here it could not).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

# Runs whose flags start processes that print what the test reads, or that change the process.
_PROCESS_FLAGS = {"--tune", "--stream", "--compile"}


def needs_process(script: str, args, env: dict) -> bool:
    """Whether this run needs a process of its own; PIPELINE_TESTS_IN_PROCESS=0 gives every run one
    (the suite as it ran before, to tell a difference of the two apart)."""
    if os.environ.get("PIPELINE_TESTS_IN_PROCESS", "1") == "0":
        return True
    if script == "serve" or "RANK" in env or "WORLD_SIZE" in env:
        return True
    return any(str(a).split("=")[0] in _PROCESS_FLAGS for a in args)


def _fresh_interpreter_warning_filters() -> None:
    """CPython's default filters with no -W option (warnings docs, 'Default Warning Filter')."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    warnings.simplefilter("default", append=True)


def _reset_process_state() -> None:
    """What a fresh process of the script would start with: W&B's setup read from this run's
    environment, our caches empty, no interrupt recorded."""
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
    import app.errors
    import app.tracking.settings

    app.tracking.settings._settings = None
    if "app.tracking.session" in sys.modules:
        sys.modules["app.tracking.session"]._backend = None
    if "app.data.locations" in sys.modules:  # bucket clients hold the credentials they were made with
        sys.modules["app.data.locations"]._CLIENTS.clear()
    app.errors.LOGGED.clear()
    app.errors.RESUME["command"] = None
    app.errors.TERMINATED["by_signal"] = False


def _load(script: Path):
    """The script's module (imported once; its `main` is what `python script.py` calls)."""
    return importlib.import_module(f"app.pipelines.{script.stem}")


def call(script: Path, args, *, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    argv = [str(script), *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_sigterm, saved_tempdir = signal.getsignal(signal.SIGTERM), tempfile.tempdir
    # A process's temporary files go where TMPDIR says, whatever a test set for its own code (the
    # DataLoader's workers hand batches over a socket there; under a deep pytest folder its path
    # is too long for AF_UNIX and the batch is lost: a hang).
    tempfile.tempdir = None
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    code = 0
    try:
        _reset_process_state()
        module = _load(script)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            _fresh_interpreter_warning_filters()
            try:
                result = module.main(list(argv[1:]))
                code = result if isinstance(result, int) else 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if exit_.code is not None and not isinstance(exit_.code, int):
                    print(exit_.code, file=sys.stderr)
            except BaseException:  # what Python does with an uncaught exception: a traceback, exit 1
                traceback.print_exc(file=sys.stderr)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
    finally:
        _reset_process_state()
        signal.signal(signal.SIGTERM, saved_sigterm)
        tempfile.tempdir = saved_tempdir
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
