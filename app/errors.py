"""The one exception type a user sees as a message instead of a traceback."""
from __future__ import annotations

import functools
import sys


# Refs of what this process has logged or linked (app.tracking appends), so that an
# interrupted script can say truthfully what it leaves behind.
LOGGED: list[str] = []


class UserError(Exception):
    """Bad input or a missing prerequisite: the message says what is wrong and the fix."""


def summary(err: BaseException) -> str:
    """An underlying error in a user's message: its type and its first line (`OSError: ...`)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def exits_cleanly(main):
    """Turn UserError and Ctrl-C into a one-paragraph message and a non-zero exit."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            if LOGGED:
                print(f"interrupted: the run is marked failed; already logged before the interrupt, and kept: "
                      f"{', '.join(LOGGED)}.", file=sys.stderr)
            else:
                print("interrupted: the run is marked failed; nothing was logged as a new version.", file=sys.stderr)
            sys.exit(130)

    return wrapper
