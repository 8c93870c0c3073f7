"""`train.py --tune`: a Bayesian sweep over sweep.yaml, online or with the local controller.

Every trial is its own `train.py` process started from the sweep's `command`, so a trial
here and one started by `wandb agent` on another machine run the very same code (locally
forked from a process that has done the imports once: trial_runner.py). At the end the
best trial's model is linked into the registry as `candidate`.
"""
from __future__ import annotations

import os
import sys
import time

from app import names
from app.cli import command
from app.errors import Interrupted, UserError
from app.tuning.trial import RESUME_ENV, SWEEP_ID_ENV, TRIAL_ENV
from app.tuning.trial_runner import run_trial, start_warm_process


def tune(args, settings) -> None:
    from app.tuning.sweep_config import (boolean_problems, load_sweep_config, resolve_program, sweep_config_path,
                                         validate, with_fixed)

    # the sweep file first: a mistake in it is named before anything starts
    sweep_file = sweep_config_path(args.sweep_config, args.arch)
    config = load_sweep_config(sweep_file)
    validate(config, str(sweep_file), arch=args.arch)
    config = with_fixed(config, fixed_values(args, config), args.max_sweep)
    for problem in boolean_problems(config):  # --tune --compile fixes a boolean for every trial
        raise UserError(f"{sweep_file}: {problem}")
    if settings.offline:
        start_warm_process()  # its imports run while this process loads the sweep engine
    else:
        from app.tracking import backend

        backend()  # W&B reachable and the key accepted, before a sweep is created
    if args.sweep_id and args.max_sweep:
        print(f"note: --max_sweep sizes a sweep when it is created; sweep {args.sweep_id} keeps the size it was "
              "created with (--count limits the trials of this agent).", file=sys.stderr)
    program = resolve_program(config["program"], sweep_file)
    collection = names.model_artifact(args.dataset, args.arch)
    if settings.offline:
        ranking = tune_locally(config, program, args, settings)
    else:
        ranking = tune_online(config, args, settings)

    metric = config["metric"]["name"]
    print(f"ranking by {metric} ({config['metric']['goal']}):")
    for place, trial in enumerate(ranking, 1):
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial["params"].items()
                           if k not in ("dataset", "arch", "data"))
        print(f"  {place}. {trial['name']:10} {trial['summary'][metric]:.4f}  [{trial.get('state')}]  "
              f"{trial.get('model_ref') or '-'}  {params}")
    best = next((t for t in ranking if t.get("model_ref")), None)
    if best is None:
        raise UserError("no trial logged a model (all failed or were stopped); check the trial output above.")
    if args.no_link:
        print(f"best: {best['model_ref']} (not linked: --no-link)")
        return
    from app.tracking import backend

    linked = backend().link(best["model_ref"], collection, [names.CANDIDATE])
    print(f"candidate: {linked.ref} [{', '.join(linked.aliases)}] <- {best['model_ref']}")


def fixed_values(args, config: dict) -> dict:
    """What this --tune fixes for every trial: dataset, arch, data, epochs, and the device flags
    given (left out at their defaults, so each agent's machine picks its own device)."""
    # A joined sweep keeps the epochs it was created with: nothing to choose (or look up) then.
    chosen_elsewhere = args.sweep_id or "epochs" in config["parameters"]
    epochs = args.epochs or (None if chosen_elsewhere else sweep_epochs(args))
    return {"dataset": args.dataset, "arch": args.arch, "data": args.data, "epochs": epochs,
            "device": args.device if args.device != "auto" else None,
            "precision": args.precision if args.precision != "auto" else None, "compile": args.compile or None,
            "stream": args.stream}


def sweep_epochs(args) -> int:
    """One epoch count for every trial of this --tune's sweep (config.trial_epochs)."""
    from app.tracking import backend
    from app.recipe.config import trial_epochs

    dataset = backend().peek(args.data or names.dataset_artifact(args.dataset), names.DATASET_TYPE)
    return trial_epochs(args.arch, dataset.metadata)


def tune_locally(config: dict, program: str, args, settings) -> list[dict]:
    from app.tracking.store import Store
    from app.tracking.sweep_controller import MAX_CONSECUTIVE_FAILURES, LocalSweeps
    from app.tuning.sweep_config import expand_command

    controller = LocalSweeps(Store(settings.store_dir))
    sweep_id = args.sweep_id or controller.create(config)
    if args.sweep_id:
        config = controller.read(sweep_id)["config"]  # the sweep as created: its search and its size
    size = config.get("run_cap")
    join = f"{command('train')} --tune --dataset {args.dataset} --arch {args.arch} --sweep-id {sweep_id}"
    epochs = config["parameters"].get("epochs", {}).get("value")
    each = f" of {epochs} epochs" if epochs else ""
    print(f"local sweep {sweep_id} ({size or 'unlimited'} trials{each}): join from another shell, or resume it "
          f"later, with `{join}`", file=sys.stderr)
    failures, trial, pace = 0, None, TrialPace(size)
    try:
        for _ in range(args.count or sys.maxsize):  # --count trials, or until the sweep has its size
            trial = controller.next_trial(sweep_id, cap=None, checkpointed=checkpointed_epoch)
            if trial is None:
                break
            again = f" (killed before, re-run from its checkpoint of epoch {len(trial['history'])})" \
                if trial.get("resume_run") else ""
            print(f"--- trial {trial['number']}{again}{pace.said(len(controller.read(sweep_id)['trials']))}: "
                  f"{trial['params']}", file=sys.stderr, flush=True)
            env = {**os.environ, SWEEP_ID_ENV: sweep_id, TRIAL_ENV: str(trial["number"]),
                   **({RESUME_ENV: trial["resume_run"]} if trial.get("resume_run") else {})}
            argv = expand_command({**config, "program": program}, trial["params"])
            returncode = run_trial(argv, env,
                                   on_start=lambda pid, n=trial["number"]: controller.set_process(sweep_id, n, pid))
            state = controller.close_trial(sweep_id, trial["number"], returncode)
            pace.done()
            failures = failures + 1 if state in ("failed", "crashed") else 0
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise UserError(f"{failures} trials in a row failed; fix the error above and resume with `{join}`.")
    except KeyboardInterrupt:
        if trial is not None:  # a trial cut short counts toward the size, as on W&B's server
            controller.close_trial(sweep_id, trial["number"], 130)
        started = len(controller.read(sweep_id)["trials"])
        raise Interrupted(f"local sweep {sweep_id} stopped with {started} of {size or 'unlimited'} trials started "
                          f"(models of finished trials are kept). Resume it with `{join}`.") from None
    return controller.ranking(sweep_id)


class TrialPace:
    """How long this agent's trials take, and the time the sweep has left at that rate: said on
    each trial's line (no line of its own), so a person knows what `--tune` costs."""

    def __init__(self, size: int | None):
        self.size, self.started, self.trials = size, time.perf_counter(), 0

    def done(self) -> None:
        self.trials += 1

    def said(self, started: int) -> str:
        """`started`: the sweep's trials started so far, this one included (every agent's)."""
        if not self.trials:
            return ""
        each = (time.perf_counter() - self.started) / self.trials
        left = f", about {minutes((self.size - started + 1) * each)} left" if self.size else ""
        return f" ({started} of {self.size or 'unlimited'}; {minutes(each)} a trial{left})"


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def checkpointed_epoch(run_id: str) -> int | None:
    """The epoch of a run's newest checkpoint, when the run stopped before its last epoch."""
    from app.tracking import backend, discovery

    found = backend().lookup(f"{names.checkpoint_artifact(run_id)}:latest")
    return found.metadata["epoch"] if found is not None and discovery.stopped_early(found) else None


def tune_online(config: dict, args, settings) -> list[dict]:
    from app.tracking import sweep_online

    sweep_id = args.sweep_id or sweep_online.create_sweep(config, settings)
    path = sweep_online.sweep_path(sweep_id, settings)
    print(f"sweep {sweep_id}: more agents on any machine with `wandb agent {path}`", file=sys.stderr)
    returncode = sweep_online.run_agent(path, args.count)
    if returncode:
        raise UserError(f"`wandb agent {path}` exited with {returncode}; see its output above.")
    return sweep_online.ranking(path, config["metric"])
