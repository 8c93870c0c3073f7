"""The local sweep controller: W&B's open-source engine (`sweeps`) over state in the store.

The W&B server plays this role online. Offline, every agent (`train.py --tune`, in any
shell) asks this controller for its next trial under the store's lock, so agents that
join one sweep never run a trial twice and together stop at the cap; a sweep that was
interrupted resumes where it stopped. Trials report each epoch here, and hyperband
(`sweeps.stop_runs`) decides whether they go on.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import warnings

import numpy as np

from app.errors import UserError
from app.processes import identity_alive, process_identity
from app.tracking.store import Store, now_iso, read_index, write_json_atomic

with warnings.catch_warnings():  # sweeps 0.3 declares a pydantic v1 config key; harmless
    warnings.simplefilter("ignore")
    import sweeps

# Trial states: running, finished, stopped (hyperband's early termination), failed (non-zero
# exit) and crashed (its process died without a word, e.g. killed with its agent).
MAX_CONSECUTIVE_FAILURES = 3  # an agent gives up instead of looping on a broken trial


def search_seed(config: dict) -> int:
    """A sweep's search seed: from what defines its search (method, metric, parameters), so the
    same search space searches the same way whatever its size or stopping rule, or how it scores
    a stopped trial (benchmarks/bench_sweep.py compares a sweep with and without early
    termination, and metric.impute's choices)."""
    search = {key: config.get(key) for key in ("method", "metric", "parameters")}
    if isinstance(search["metric"], dict):
        search["metric"] = {k: v for k, v in search["metric"].items() if k not in ("impute", "impute_while_running")}
    digest = hashlib.sha256(json.dumps(search, sort_keys=True, default=str).encode()).hexdigest()
    return int(digest[:8], 16)


def killed(trial: dict) -> bool:
    """Its process died without a word (crashed), or was ended by a signal: Ctrl-C's 130,
    SIGKILL's and SIGTERM's 137 and 143 (or -9, -15 as Python reports a child's signal)."""
    code = trial.get("returncode")
    return bool(trial.get("run_id")) and (trial["state"] == "crashed" or (
        trial["state"] == "failed" and code is not None and (code < 0 or code in (130, 137, 143))))


class LocalSweeps:
    def __init__(self, store: Store):
        self.store = store

    def _path(self, sweep_id: str):
        return self.store.sweeps_dir / f"{sweep_id}.json"

    def read(self, sweep_id: str) -> dict:
        state = read_index(self._path(sweep_id), "sweep", {"id": str, "config": dict, "trials": list})
        if state is None:
            known = sorted(p.stem for p in self.store.sweeps_dir.glob("*.json")) if self.store.sweeps_dir.exists() else []
            raise UserError(f"no local sweep {sweep_id!r}. Known sweeps: {', '.join(known) or 'none'}.")
        return state

    def _write(self, state: dict) -> None:
        write_json_atomic(self._path(state["id"]), state)

    def create(self, config: dict) -> str:
        with self.store.locked():
            sweep_id = secrets.token_hex(4)
            self._write({"id": sweep_id, "config": config, "created_at": now_iso(), "trials": [],
                         "seed": search_seed(config)})
        return sweep_id

    @staticmethod
    def _as_sweep_run(trial: dict) -> "sweeps.SweepRun":
        """A trial as W&B's server hands it to the engine. A trial Hyperband stopped is not
        finished there: `wandb agent` stops it with SIGTERM, train.py exits non-zero, and W&B
        records a non-zero exit as Failed (a forced stop as Killed, which the engine treats
        alike). The Bayesian search then scores it by the file's `metric.impute` (W&B's
        default: the worst value any trial logged), not by its score at the epoch it stopped,
        online and offline alike."""
        state = {"finished": "finished", "running": "running"}.get(trial["state"], "failed")
        return sweeps.SweepRun(
            name=trial["name"], state=state, config={k: {"value": v} for k, v in trial["params"].items()},
            history=trial["history"], summary_metrics=trial["summary"],
        )

    @staticmethod
    def _alive(trial: dict) -> bool:
        """A running trial is alive while its process runs; before the agent has recorded that
        process (a moment after the claim), while the agent that claimed it runs."""
        if trial.get("process"):
            return identity_alive(trial["process"])
        return identity_alive(trial.get("agent"))

    def _mark_dead(self, state: dict) -> None:
        """Trials whose processes died without closing them (an agent killed with its trial)."""
        for trial in state["trials"]:
            if trial["state"] == "running" and not self._alive(trial):
                trial["state"] = "crashed"
                trial["finished_at"] = now_iso()

    def next_trial(self, sweep_id: str, cap: int | None, checkpointed=None) -> dict | None:
        """Claim the next trial's parameters, or None when the sweep has reached its cap.

        `checkpointed(run_id)`: the epoch of a run's newest checkpoint when it stopped before its
        last (else None). A trial killed with such a checkpoint is claimed again first, as it
        was (its number, its parameters, its run), with `resume_run` set: it goes on from there
        and takes no new place under the cap."""
        with self.store.locked():
            state = self.read(sweep_id)
            self._mark_dead(state)
            for trial in state["trials"]:
                epoch = checkpointed(trial["run_id"]) if checkpointed and killed(trial) else None
                if epoch is not None:
                    trial.update(state="running", agent=process_identity(os.getpid()), process=None,
                                 resume_run=trial["run_id"], history=trial["history"][:epoch], resumed_at=now_iso())
                    trial["summary"] = dict(trial["history"][-1]) if trial["history"] else {}
                    self._write(state)
                    return trial
            # As on W&B's server, every trial the sweep started counts toward run_cap,
            # failed and crashed ones included, so a broken trial cannot make a sweep endless.
            run_cap = state["config"].get("run_cap")
            limits = [c for c in (cap, run_cap) if c]
            if limits and len(state["trials"]) >= min(limits):
                self._write(state)
                return None
            # The engine draws from numpy's and Python's global generators: seeded per suggestion,
            # the same sweep with the same history suggests the same trial (make demo repeats).
            seed = state.get("seed", 0) + len(state["trials"])
            random.seed(seed)
            np.random.seed(seed % 2**32)
            suggestion = sweeps.next_run(state["config"], [self._as_sweep_run(t) for t in state["trials"]])
            if suggestion is None:  # a finished grid
                self._write(state)
                return None
            number = len(state["trials"])
            trial = {
                "number": number, "name": f"trial-{number}", "state": "running",
                "agent": process_identity(os.getpid()), "process": None, "params": {k: v["value"] for k, v in suggestion.config.items()},
                "history": [], "summary": {}, "model_ref": None, "started_at": now_iso(),
            }
            state["trials"].append(trial)
            self._write(state)
            return trial

    def _update(self, sweep_id: str, number: int, change) -> dict:
        with self.store.locked():
            state = self.read(sweep_id)
            trial = state["trials"][number]
            result = change(state, trial)
            self._write(state)
            return result

    def set_run(self, sweep_id: str, number: int, run_id: str) -> None:
        """Record the trial's W&B run (its checkpoints are `checkpoint-<run id>`)."""

        def change(state, trial):
            trial["run_id"] = run_id

        self._update(sweep_id, number, change)

    def set_process(self, sweep_id: str, number: int, pid: int) -> None:
        """Record the trial's own process, as soon as the agent has started it."""

        def change(state, trial):
            trial["process"] = process_identity(pid)

        self._update(sweep_id, number, change)

    def report_epoch(self, sweep_id: str, number: int, record: dict) -> bool:
        """Append an epoch's metrics; True when hyperband says this trial should stop."""

        def change(state, trial):
            # The reporting process is the trial: alive, whatever was concluded without it.
            trial["process"] = trial.get("process") or process_identity(os.getpid())
            if trial["state"] == "crashed":
                trial["state"] = "running"
            trial["history"].append(record)
            trial["summary"] = dict(record)
            if "early_terminate" not in state["config"]:
                return False
            running = [self._as_sweep_run(t) for t in state["trials"]]
            stop = any(r.name == trial["name"] for r in sweeps.stop_runs(state["config"], running))
            if stop:
                trial["state"] = "stopped"
                trial["stopped_at_epoch"] = len(trial["history"])
            return stop

        return self._update(sweep_id, number, change)

    def finish(self, sweep_id: str, number: int, model_ref: str | None) -> None:
        def change(state, trial):
            if trial["state"] == "running":
                trial["state"] = "finished"
            trial["model_ref"] = model_ref
            trial["finished_at"] = now_iso()

        self._update(sweep_id, number, change)

    def close_trial(self, sweep_id: str, number: int, returncode: int) -> str:
        """After the trial process exits: one that never reported finishing failed."""

        def change(state, trial):
            if trial["state"] == "running":
                trial["state"] = "failed" if returncode else "crashed"
                trial["returncode"] = returncode
            return trial["state"]

        return self._update(sweep_id, number, change)

    def ranking(self, sweep_id: str) -> list[dict]:
        """Trials with a metric, best first (dead trials marked crashed first)."""
        with self.store.locked():
            state = self.read(sweep_id)
            self._mark_dead(state)
            self._write(state)
        metric = state["config"]["metric"]
        scored = [t for t in state["trials"] if metric["name"] in t["summary"]]
        return sorted(scored, key=lambda t: t["summary"][metric["name"]], reverse=metric["goal"] == "maximize")
