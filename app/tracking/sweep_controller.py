"""The local sweep controller: W&B's open-source engine (`sweeps`) over state in the store.

The W&B server plays this role online. Offline, every agent (`train.py --tune`, in any
shell) asks this controller for its next trial under the store's lock, so agents that
join one sweep never run a trial twice and together stop at the cap; a sweep that was
interrupted resumes where it stopped. Trials report each epoch here, and hyperband
(`sweeps.stop_runs`) decides whether they go on.
"""
from __future__ import annotations

import json
import os
import secrets
import warnings

from app.errors import UserError
from app.tracking.store import Store, now_iso, pid_alive, write_json_atomic

with warnings.catch_warnings():  # sweeps 0.3 declares a pydantic v1 config key; harmless
    warnings.simplefilter("ignore")
    import sweeps

# Trial states; "stopped" is hyperband's early termination, "crashed" a trial whose process died.
DONE_STATES = ("finished", "stopped")
MAX_CONSECUTIVE_FAILURES = 3  # an agent gives up instead of looping on a broken trial


class LocalSweeps:
    def __init__(self, store: Store):
        self.store = store

    def _path(self, sweep_id: str):
        return self.store.sweeps_dir / f"{sweep_id}.json"

    def read(self, sweep_id: str) -> dict:
        try:
            return json.loads(self._path(sweep_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            known = sorted(p.stem for p in self.store.sweeps_dir.glob("*.json")) if self.store.sweeps_dir.exists() else []
            raise UserError(f"no local sweep {sweep_id!r}. Known sweeps: {', '.join(known) or 'none'}.") from None

    def _write(self, state: dict) -> None:
        write_json_atomic(self._path(state["id"]), state)

    def create(self, config: dict) -> str:
        with self.store.locked():
            sweep_id = secrets.token_hex(4)
            self._write({"id": sweep_id, "config": config, "created_at": now_iso(), "trials": []})
        return sweep_id

    @staticmethod
    def _as_sweep_run(trial: dict) -> "sweeps.SweepRun":
        state = {"finished": "finished", "stopped": "finished", "running": "running"}.get(trial["state"], "failed")
        return sweeps.SweepRun(
            name=trial["name"], state=state, config={k: {"value": v} for k, v in trial["params"].items()},
            history=trial["history"], summary_metrics=trial["summary"],
        )

    def _mark_dead(self, state: dict) -> None:
        for trial in state["trials"]:
            if trial["state"] == "running" and not pid_alive(trial["agent_pid"]) and not pid_alive(trial.get("pid") or -1):
                trial["state"] = "crashed"

    def next_trial(self, sweep_id: str, cap: int | None) -> dict | None:
        """Claim the next trial's parameters, or None when the sweep has reached its cap."""
        with self.store.locked():
            state = self.read(sweep_id)
            self._mark_dead(state)
            counted = [t for t in state["trials"] if t["state"] in (*DONE_STATES, "running")]
            run_cap = state["config"].get("run_cap")
            limits = [c for c in (cap, run_cap) if c]
            if limits and len(counted) >= min(limits):
                self._write(state)
                return None
            suggestion = sweeps.next_run(state["config"], [self._as_sweep_run(t) for t in state["trials"]])
            if suggestion is None:  # a finished grid
                self._write(state)
                return None
            number = len(state["trials"])
            trial = {
                "number": number, "name": f"trial-{number}", "state": "running", "agent_pid": os.getpid(),
                "pid": None, "params": {k: v["value"] for k, v in suggestion.config.items()},
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

    def report_epoch(self, sweep_id: str, number: int, record: dict) -> bool:
        """Append an epoch's metrics; True when hyperband says this trial should stop."""

        def change(state, trial):
            trial["pid"] = os.getpid()
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
        """Trials with a metric, best first."""
        state = self.read(sweep_id)
        metric = state["config"]["metric"]
        scored = [t for t in state["trials"] if metric["name"] in t["summary"]]
        return sorted(scored, key=lambda t: t["summary"][metric["name"]], reverse=metric["goal"] == "maximize")
