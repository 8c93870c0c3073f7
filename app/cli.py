"""argparse with both spellings of every long flag (`--max-sweep` and the original's `--max_sweep`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app import names, progress


def command(script: str) -> str:
    """How to run pipeline script `script` ("registry", "train", ...) as this process was started,
    for the commands a message prints: `python ../app/pipelines/registry.py` when it was started
    from another folder, `python -m app.pipelines.registry` when started with -m."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.startswith("app.pipelines."):
        return f"python -m app.pipelines.{script}"
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started is not None and started.suffix == ".py" and started.parent.name == "pipelines":
        return f"python {started.parent / (script + '.py')}"
    return f"python app/pipelines/{script}.py"


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag once, in the spelling it was declared with (the other is accepted, not
    listed), and its default, unless there is none to show (None: decided later, and the help
    says how), it is a switch (on or off is what its name says: `--no-generate-images` is no
    "default: True"), or the help already names it."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0 or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _format_action_invocation(self, action):
        shown = [s for s in action.option_strings if s in getattr(action, "declared", action.option_strings)]
        if not shown or action.nargs == 0:
            return ", ".join(shown) or super()._format_action_invocation(action)
        return f"{', '.join(shown)} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose add_argument also accepts the other spelling of a long flag."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
        # every script, and each of registry.py's commands (SUPPRESS: a command's parser must not
        # reset what `registry.py -v list` set)
        super().add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="say more: W&B's own lines, each checkpoint, the offline notice every time")

    def parse_args(self, *args, **kwargs):
        parsed = super().parse_args(*args, **kwargs)
        progress.set_verbose(getattr(parsed, "verbose", False))
        return parsed

    def add_argument(self, *names, **kwargs):
        return declared(super().add_argument, names, kwargs)

    def add_argument_group(self, *args, **kwargs):
        """A group whose flags get both spellings too (argparse's groups add their own arguments)."""
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument
        group.add_argument = lambda *names, **flag: declared(add, names, flag)
        return group


def declared(add, names, kwargs):
    """add_argument with both spellings, remembering the declared ones for --help (a
    BooleanOptionalAction's --no-x included)."""
    action = add(*both_spellings(names), **kwargs)
    action.declared = [*names, *("--no-" + n[2:] for n in names if n.startswith("--"))]
    return action


def both_spellings(names) -> list[str]:
    """`--max_sweep` and `--max-sweep`, whichever was written."""
    spellings = list(names)
    for name in names:
        if name.startswith("--"):
            stem = name[2:]
            for other in ("--" + stem.replace("-", "_"), "--" + stem.replace("_", "-")):
                if other not in spellings:
                    spellings.append(other)
    return spellings


def fraction_percent(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage in (0, 100], got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    return _finite_float(text, zero_allowed=False)


def non_negative_float(text: str) -> float:
    return _finite_float(text, zero_allowed=True)


def _finite_float(text: str, zero_allowed: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero_allowed else value > 0) or value == float("inf"):  # nan fails both
        raise argparse.ArgumentTypeError(
            f"must be {'0 or a positive number' if zero_allowed else 'a number greater than 0'}, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def add_model_flags(parser, alias: str, model_default: str | None = None) -> None:
    """--dataset, --arch and --model: which registry model a step works on (by default the one
    registry collection whose versions carry `alias`)."""
    picks = f"picks the registry collection (default: the one with '{alias}')"
    parser.add_argument("--dataset", type=names.dataset_name, default=None, help=picks)
    parser.add_argument("--arch", choices=names.ARCHITECTURES, default=None, help=picks)
    parser.add_argument("--model", metavar="REF", help="model ref (default: "
                        + (model_default or f"wandb-registry-model/<dataset>-<arch>:{alias}") + ")")
