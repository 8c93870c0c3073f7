"""Which process is which: a pid with the kernel's start time, so a record of a process (a sweep's
trial, a training sharing the cores) tells it from a later process that reuses its pid.
Linux's /proc gives the start time; elsewhere the pid alone is checked.
"""
from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0 or -1, 0) would probe a whole process group and "succeed"
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has ended but whose parent has not reaped it yet (Linux /proc): killed
    with its parent, it waits for init, for seconds in some containers, yet it runs no more."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (Linux /proc), to tell a live process from a
    later one that reuses its pid; None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def process_identity(pid: int) -> dict:
    return {"pid": pid, "started": process_start_time(pid)}


def identity_alive(identity: dict | None) -> bool:
    """The process recorded by process_identity still runs (not merely its pid)."""
    if not identity or not pid_alive(identity["pid"]):
        return False
    started = identity.get("started")
    return started is None or process_start_time(identity["pid"]) in (None, started)
