"""The one exception type a user sees as a message instead of a traceback."""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback


# Refs of what this process has logged or linked (app.tracking appends), so that an
# interrupted script can say truthfully what it leaves behind.
LOGGED: list[str] = []


# evaluate.py --promote's exit status when the gate refused the promotion (documented in the
# README): a refusal is an answer, not an error (2), and CI can branch on it.
PROMOTION_REFUSED = 3


class UserError(Exception):
    """Bad input or a missing prerequisite: the message says what is wrong and the fix."""


class AliasMoved(UserError):
    """An alias the caller decided against moved before its write (a compare-and-set refused):
    nothing was changed, and the caller may decide again against the new state."""


class Interrupted(Exception):
    """Ctrl-C, with what the interrupted step leaves behind and how to go on (the message)."""


def summary(err: BaseException) -> str:
    """An underlying error in a user's message: its type and its first line (`OSError: ...`)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def speak_on_rank_0_only() -> None:
    """Under torchrun every process runs the script: the others' notices and progress lines
    would repeat rank 0's and run into them on one terminal. Their output is dropped; an
    error or a traceback still reaches the terminal (sys.__stderr__), named by its rank."""
    rank = os.environ.get("RANK", "0")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or rank == "0":
        return
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    sys.excepthook = lambda kind, err, tb: traceback.print_exception(kind, err, tb, file=sys.__stderr__)


def _error_stream():
    """Where a user's error goes: stderr, or the real one on a quiet torchrun rank."""
    return sys.stderr if os.environ.get("RANK", "0") == "0" else sys.__stderr__


def _rank_label() -> str:
    rank = os.environ.get("RANK", "0")
    return f" (rank {rank})" if rank != "0" else ""


# How to go on after an interrupt, once there is a way (a baseline's or --retrain's first checkpoint).
RESUME = {"command": None}

# Set when SIGTERM (what `kill` and job schedulers send) interrupted this process: a sweep's agent
# then passes it on to its trial, which Ctrl-C would have reached through the terminal.
TERMINATED = {"by_signal": False}


def _terminated(signum, frame):
    TERMINATED["by_signal"] = True
    raise KeyboardInterrupt


def exits_cleanly(main):
    """Turn UserError and Ctrl-C (or SIGTERM, handled as Ctrl-C) into a one-paragraph message and
    a non-zero exit."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminated)
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error{_rank_label()}: {err}", file=_error_stream(), flush=True)
            sys.exit(2)
        except Interrupted as err:
            print(f"interrupted: {err}", file=sys.stderr)
            sys.exit(130)
        except KeyboardInterrupt:
            if RESUME["command"]:
                print(f"interrupted: the run is marked failed; its newest checkpoint is kept. Resume it with "
                      f"`{RESUME['command']}`.", file=sys.stderr)
            elif LOGGED:
                print(f"interrupted: the run is marked failed; already logged before the interrupt, and kept: "
                      f"{', '.join(LOGGED)}.", file=sys.stderr)
            else:
                print("interrupted: the run is marked failed; nothing was logged as a new version.", file=sys.stderr)
            sys.exit(130)

    return wrapper
