"""Trainings on one machine share its CPU cores.

torch gives a process one thread per core. Two trainings at once, each with every core's thread,
ran many times slower than with a core each: on the 2-core VM, epoch 1 of the digits convnet took
21.5 s against 1.4 s, later epochs 2.7-3.5 s against 1.0-1.1 s (docs/performance.md, "Trainings
on one machine"). That is what two `wandb agent`s, two agents of a local sweep, or a sweep beside
a plain run get on one machine.

So every training on the CPU registers itself in a folder of this machine's temp directory (one
file a training: its process, and its thread count when that is fixed) and takes its share of the
cores: those left by the trainings whose count is fixed, over the trainings that share. It takes
it at the start and again at most every CHECK_SECONDS between steps, so a training started alone
gives up cores when another starts, and takes them back when that one ends. A process that ended
without unregistering (killed) no longer counts: its record names a process that is gone.

OMP_NUM_THREADS fixes a training's count (the user's choice, or torchrun's one thread a rank):
such a training counts with its threads and keeps them.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch

from app.processes import identity_alive, process_identity

CHECK_SECONDS = 5.0  # how often a training looks again at who else trains (a directory listing)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fixed_threads() -> int | None:
    """The thread count OMP_NUM_THREADS fixes (an empty or invalid value fixes none)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def trainings_folder() -> Path:
    """Where this machine's trainings register: one folder per user in the temp directory."""
    return Path(tempfile.gettempdir()) / f"image-pipeline-trainings-{os.getuid()}"


class CoreShare:
    """One training's registration; `adjust()` between steps sets its torch thread count."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder or trainings_folder()
        self.fixed = fixed_threads()
        self.entry = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.original = torch.get_num_threads()
        self.checked = float("-inf")
        self.others = 0
        self.registered = True
        self.said = False  # the first line of a change says how to fix the count

    def __enter__(self) -> "CoreShare":
        record = {**process_identity(os.getpid()), "threads": self.fixed}
        staged = self.entry.with_suffix(".tmp")
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            staged.write_text(json.dumps(record))
            staged.replace(self.entry)  # whole or not at all: another training may read it at once
        except OSError:  # no writable temp directory: this training keeps torch's count, as before
            self.registered = False
        self.adjust(force=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.registered:
            self.entry.unlink(missing_ok=True)
            if self.fixed is None:
                torch.set_num_threads(self.original)  # as it was: the process may train again (tests, notebooks)

    def others_training(self) -> list[dict]:
        """The records of the other live trainings on this machine (one per process; records of
        processes that are gone are removed)."""
        found = {}
        for path in self.folder.glob("*.json"):
            if path == self.entry:
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):  # unregistered meanwhile
                continue
            if not (isinstance(record, dict) and isinstance(record.get("pid"), int)):
                continue  # not a record this code writes: never a reason to stop training
            if not isinstance(record.get("threads"), int):
                record["threads"] = None
            if not identity_alive(record):
                path.unlink(missing_ok=True)
            elif record["pid"] != os.getpid():  # one process has one thread pool
                found[record["pid"]] = record
        return list(found.values())

    def cores(self) -> int:
        """The cores the trainings share: those this process may use, and never more than torch's
        own count for it (a training alone keeps what torch chose)."""
        return min(usable_cores(), self.original)

    def share(self) -> int:
        """This training's threads: the cores the fixed trainings leave, over the trainings that
        share (alone, a training keeps torch's own count)."""
        others = self.others_training()
        self.others = len(others)
        left = self.cores() - sum(r["threads"] for r in others if r["threads"])
        sharing = 1 + sum(1 for r in others if not r["threads"])
        return max(1, left // sharing)

    def adjust(self, force: bool = False) -> None:
        """Take this training's share now (at most every CHECK_SECONDS unless forced); a change is said."""
        now = time.monotonic()
        if self.fixed is not None or not self.registered or (not force and now - self.checked < CHECK_SECONDS):
            return
        self.checked = now
        threads = self.share()
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            now_training = f"{self.others + 1} trainings on this machine" if self.others else \
                "this training is alone on this machine again"
            hint = "" if self.said else " (OMP_NUM_THREADS fixes a training's count)"
            print(f"{now_training}: it uses {threads} of the {self.cores()} cores now{hint}", file=sys.stderr,
                  flush=True)
            self.said = True


def shared_cores(device: torch.device) -> contextlib.AbstractContextManager[CoreShare | None]:
    """A training on `device` registered for its share of the cores (on the CPU; else nothing)."""
    return CoreShare() if device.type == "cpu" else contextlib.nullcontext()
