"""Progress of long loops: a live bar on a terminal (tqdm), one summary line otherwise.

CI logs and `wandb agent` logs are not terminals: a redrawn bar there is thousands of lines
of carriage returns, so off a terminal the loop runs silently and ends with one line.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

# -v / --verbose on every script (app/cli.py sets it). An environment variable, so the processes a
# script starts (sweep trials, DataLoader workers) are as verbose as it is.
VERBOSE_ENV = "PIPELINE_VERBOSE"


def set_verbose(on: bool) -> None:
    if on:
        os.environ[VERBOSE_ENV] = "1"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def detail(text: str) -> None:
    """A line for -v only: what a person needs when looking closer (each checkpoint, W&B's own
    lines), not on every run. Warnings and errors are printed always, never through here."""
    say(text, verbose_only=True)


def say(text: str, verbose_only: bool = False) -> None:
    """A line on stderr; with `verbose_only`, only with -v (detail)."""
    if not verbose_only or verbose():
        print(text, file=sys.stderr, flush=True)


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(items: Iterable[T], total: int, description: str, unit: str = "it") -> Iterator[T]:
    """Yield `items`, showing progress on stderr; the summary line says how many and how fast."""
    started = time.perf_counter()
    if on_terminal():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True)
        return
    count = 0
    for count, item in enumerate(items, 1):
        yield item
    seconds = time.perf_counter() - started
    rate = f", {count / seconds:.0f} {unit}/s" if seconds > 0 and count else ""
    print(f"{description}: {count} {unit} in {seconds:.1f} s{rate}", file=sys.stderr, flush=True)
