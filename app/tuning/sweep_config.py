"""sweep.yaml: loading, validation before anything runs, and the agent's command expansion."""
from __future__ import annotations

import shlex
import sys
import warnings
from pathlib import Path

import yaml

from app import names
from app.errors import UserError
from app.recipe.config import TrainConfig, hyperparameter_names, model_defaults

with warnings.catch_warnings():  # sweeps 0.3 declares a pydantic v1 config key; harmless
    warnings.simplefilter("ignore")
    import sweeps

# Flags of train.py a sweep may set, and keys train.py logs that a sweep may optimise.
TRIAL_FLAGS = {*hyperparameter_names(), "epochs", "dataset", "arch", "data", "device", "precision", "compile", "stream"}
LOGGED_KEYS = set(names.EPOCH_METRICS)
# W&B's agent macros this project's trials understand. Booleans are train.py's flags as a person
# types them (--compile, --no-pretrained): ${args_no_boolean_flags} renders True as --flag and
# leaves False out, where ${args} would pass --compile=False.
BOOLEAN_ARGS = "${args_no_boolean_flags}"
MACROS = {"${env}", "${interpreter}", "${program}", "${args}", "${args_no_hyphens}", BOOLEAN_ARGS}
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # W&B's, where a sweep has none


def default_sweep_file(arch: str) -> str:
    """sweep.yaml for the default architecture, sweep-pretrained.yaml for torchvision's pretrained
    classifiers, or the architecture's own sweep-<arch>.yaml (sweep-cnn.yaml: the original's)."""
    if arch in names.PRETRAINED_ARCHITECTURES:
        return "sweep-pretrained.yaml"
    return "sweep.yaml" if arch == TrainConfig.arch else f"sweep-{arch}.yaml"


def sweep_config_path(given: str | None, arch: str = TrainConfig.arch) -> Path:
    """--sweep-config as given; the default (per --arch), when the working directory has none,
    is the project's own, so --tune works from any directory."""
    name = given or default_sweep_file(arch)
    path = Path(name)
    if not path.exists() and given is None and (PROJECT_ROOT / name).exists():
        return PROJECT_ROOT / name
    return path


def load_sweep_config(path: Path) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found; pass --sweep-config or run from the repo root.") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} must hold a mapping with method, metric and parameters.")
    return config


def validate(config: dict, source: str = "sweep.yaml", arch: str | None = None) -> None:
    """W&B's schema, then what the schema cannot know: flags train.py has (for this --arch)
    and keys it logs."""
    problems = list(sweeps.schema_violations_from_proposed_config(config))
    other_arch_keys = set(hyperparameter_names()) - set(hyperparameter_names(arch)) if arch else set()
    for name in config.get("parameters") or {}:
        if name not in TRIAL_FLAGS:
            problems.append(f"parameter {name!r} is not a train.py flag (known: {', '.join(sorted(TRIAL_FLAGS))})")
        elif name in other_arch_keys:
            problems.append(f"parameter {name!r} does not apply to --arch {arch} (its own: "
                            f"{', '.join(model_defaults(arch))}); use a sweep file for {arch}")
    fixed = (config.get("parameters") or {}).get("arch")
    if arch and isinstance(fixed, dict) and fixed.get("value") not in (None, arch):
        problems.append(f"this sweep file is for --arch {fixed['value']}, not {arch}; pass --arch {fixed['value']} "
                        f"or use {default_sweep_file(arch)}")
    metric = (config.get("metric") or {}).get("name")
    if metric not in LOGGED_KEYS:
        problems.append(f"metric.name {metric!r} is not a key train.py logs (logged: {', '.join(sorted(LOGGED_KEYS))})")
    problems += boolean_problems(config)
    for part in config.get("command") or []:
        if part.startswith("${") and part not in MACROS:
            problems.append(f"command macro {part!r} is not supported (use {', '.join(sorted(MACROS))})")
        if part in ("--tune", "--retrain"):
            problems.append(f"command must run one plain trial; remove {part!r}")
    if problems:
        raise UserError(f"{source} is invalid:\n  - " + "\n  - ".join(problems))


def boolean_problems(config: dict) -> list[str]:
    """A true/false parameter needs ${args_no_boolean_flags}: train.py's booleans are --flag or absent."""
    booleans = sorted(name for name, spec in (config.get("parameters") or {}).items() if _takes_booleans(spec))
    if booleans and BOOLEAN_ARGS not in (config.get("command") or DEFAULT_COMMAND):
        return [f"parameter(s) {', '.join(booleans)} take true/false, which train.py's flags spell --flag or leave "
                f"out: write {BOOLEAN_ARGS} instead of ${{args}} in the sweep's command"]
    return []


def _takes_booleans(spec) -> bool:
    if not isinstance(spec, dict):
        return False
    values = spec.get("values") if isinstance(spec.get("values"), list) else [spec.get("value")]
    return any(isinstance(v, bool) for v in values)


DEFAULT_SWEEP_SIZE = 30  # trials of a sweep whose file sets no run_cap and no --max_sweep is given


def with_fixed(config: dict, fixed: dict, size: int | None = None) -> dict:
    """The sweep as created: sweep.yaml plus the fixed values of this --tune (dataset, arch, epochs,
    device flags given), and its size as W&B's `run_cap`: --max_sweep, else the file's run_cap,
    else DEFAULT_SWEEP_SIZE. The sweep keeps it, so every agent that joins later stops there."""
    params = dict(config["parameters"])
    params.update({k: {"value": v} for k, v in fixed.items() if v is not None})
    return {**config, "parameters": params, "run_cap": size or config.get("run_cap") or DEFAULT_SWEEP_SIZE}


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_program(program: str, sweep_file: Path) -> str:
    """`program` as the agent finds it (from the working directory), else beside sweep.yaml,
    else in this project's root, so --tune works from any directory."""
    for base in (Path.cwd(), Path(sweep_file).resolve().parent, PROJECT_ROOT):
        if (base / program).exists():
            return str(base / program)
    raise UserError(f"sweep program {program!r} not found; run from the repo root or fix `program` in {sweep_file}.")


def expand_command(config: dict, params: dict, python: str = sys.executable) -> list[str]:
    """The trial's argv, expanded as `wandb agent` expands the sweep's command."""
    command = config.get("command") or DEFAULT_COMMAND
    argv: list[str] = []
    for part in command:
        if part == "${env}":
            continue  # the agent prepends /usr/bin/env; the environment is inherited anyway
        elif part == "${interpreter}":
            argv.append(python)
        elif part == "${program}":
            argv.append(config["program"])
        elif part == "${args}":
            argv.extend(f"--{k}={v}" for k, v in params.items())
        elif part == BOOLEAN_ARGS:
            argv.extend(f"--{k}" if v is True else f"--{k}={v}" for k, v in params.items() if v is not False)
        elif part == "${args_no_hyphens}":
            argv.extend(f"{k}={v}" for k, v in params.items())
        else:
            argv.extend(shlex.split(part))
    return argv
