"""The one exception type a user sees as a message instead of a traceback."""
from __future__ import annotations

import functools
import sys


class UserError(Exception):
    """Bad input or a missing prerequisite: the message says what is wrong and the fix."""


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
            print("interrupted: nothing was logged as a new version.", file=sys.stderr)
            sys.exit(130)

    return wrapper
