"""registry.py watch: follows the model registry's aliases, online or offline through the same
backend calls (Backend.find), and runs each matching hook of hooks.yaml once per alias move.

A move is an alias now on another version than the last poll saw (or on a collection it was not
on). The first poll only records where the aliases are: what was there before the watcher
started is no move. Positions, moves and the state of every hook run are kept in a JSON state
file, written after each change (atomically), so a restarted watcher runs nothing twice: a run
that finished (or gave up) is never run again; one that was under way when the watcher died is
run again, as it never finished. Hooks run in a pool of threads: a slow or failing hook holds
back no other, and a failing one is tried again after a backoff that doubles, a bounded number
of times.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from app import names
from app.errors import summary
from app.hooks.config import PLACEHOLDERS, Hook, Hooks


@dataclass(frozen=True)
class Move:
    collection: str
    alias: str
    version: str  # the registry ref the alias is on now
    digest: str
    number: int  # the how-manieth move of this alias in this collection the watcher saw

    def values(self) -> dict[str, str]:
        return {"version": self.version, "collection": self.collection, "alias": self.alias, "digest": self.digest}


class State:
    """The watcher's memory, a JSON file: where each alias was, how many moves were seen, and every
    hook run's status (running, done, failed) and attempts."""

    def __init__(self, path: Path):
        self.path, self._lock = path, threading.Lock()
        try:
            self.data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {"positions": {}, "runs": {}}
        except (ValueError, OSError) as err:
            from app.errors import UserError

            raise UserError(f"the watcher's state file {path} cannot be read ({summary(err)}); move it away to start "
                            "afresh (the aliases' current places are then taken as the start, nothing is re-run).") \
                from err

    @property
    def started(self) -> bool:
        return bool(self.data.get("started"))

    def update(self, change) -> None:
        with self._lock:
            change(self.data)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(temporary, self.path)  # a crash leaves the old file or the new one, never half of one


def run_key(hook: Hook, move: Move) -> str:
    return f"{hook.name}|{move.collection}|{move.alias}|{move.number}"


class Watcher:
    def __init__(self, backend, hooks: Hooks, state_path: Path, workers: int = 8, say=None):
        self.backend, self.hooks, self.state = backend, hooks, State(state_path)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hook")
        self.stop = threading.Event()
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.pending: list[Future] = []
        self._running: set[str] = set()  # runs under way in this watcher

    def poll(self) -> list[tuple[Hook, Move]]:
        """One look at the registry: the hook runs its moves call for (started, not waited for)."""
        where = {}
        for alias in self.hooks.aliases:
            for version in self.backend.find(names.MODEL_TYPE, alias, registry=True):
                where[f"{version.collection}|{alias}"] = {"version": version.ref, "digest": version.digest}
        jobs = []

        def record(data: dict) -> None:
            first = not data.get("started")
            for key, now in sorted(where.items()):
                before = data["positions"].get(key)
                if before is not None and before["version"] == now["version"] and before["digest"] == now["digest"]:
                    continue
                number = (before or {}).get("moves", 0) + (0 if first else 1)
                data["positions"][key] = {**now, "moves": number}
                if first:
                    continue
                collection, alias = key.split("|", 1)
                move = Move(collection, alias, now["version"], now["digest"], number)
                jobs.extend((hook, move) for hook in self.hooks.hooks if hook.matches(collection, alias))
            # runs under way when a watcher stopped never finished: they run again
            for key, run in data["runs"].items():
                if run["status"] == "running" and key not in self._running:
                    hook = next((h for h in self.hooks.hooks if h.name == run["hook"]), None)
                    if hook is not None:
                        jobs.append((hook, Move(**run["move"])))
            for hook, move in jobs:
                key = run_key(hook, move)
                data["runs"].setdefault(key, {"hook": hook.name, "move": move.__dict__, "attempts": 0})
                data["runs"][key]["status"] = "running"
            data["started"] = True

        self.state.update(record)
        jobs = [(h, m) for h, m in jobs if run_key(h, m) not in self._running]
        for hook, move in jobs:
            self._running.add(run_key(hook, move))
            self.say(f"hook {hook.name}: {move.alias} moved to {move.version} in {move.collection}")
            self.pending.append(self.pool.submit(self._run, hook, move))
        return jobs

    def _run(self, hook: Hook, move: Move) -> None:
        key = run_key(hook, move)
        wait = self.hooks.backoff_seconds
        try:
            for attempt in range(1, self.hooks.retries + 2):
                start = time.monotonic()
                error = self._attempt(hook, move)
                self.state.update(lambda data: data["runs"][key].update(
                    attempts=attempt, status="done" if error is None else "running", error=error,
                    at=datetime.now(timezone.utc).isoformat(timespec="seconds")))
                if error is None:
                    self.say(f"hook {hook.name}: done for {move.version} in {time.monotonic() - start:.1f} s")
                    return
                if attempt > self.hooks.retries:
                    break
                self.say(f"hook {hook.name}: failed for {move.version} ({error}); try {attempt + 1} of "
                         f"{self.hooks.retries + 1} in {wait:g} s")
                if self.stop.wait(wait):
                    return  # stopping: left as running, so the next watcher runs it again
                wait *= 2
            self.state.update(lambda data: data["runs"][key].update(status="failed"))
            self.say(f"hook {hook.name}: gave up on {move.version} after {self.hooks.retries + 1} tries ({error})")
        finally:
            self._running.discard(key)

    def _attempt(self, hook: Hook, move: Move) -> str | None:
        """None when the hook succeeded, else why not."""
        values = move.values()
        try:
            if hook.command is not None:
                command = [word.format_map(_Only(values)) for word in hook.command]
                env = {**os.environ, **{f"HOOK_{k.upper()}": v for k, v in values.items()}}
                done = subprocess.run(command, env=env, timeout=self.hooks.timeout_seconds)
                return None if done.returncode == 0 else f"exit status {done.returncode}"
            return _post(hook, values, self.hooks.timeout_seconds)
        except subprocess.TimeoutExpired:
            return f"took longer than {self.hooks.timeout_seconds:g} s"
        except (OSError, ValueError) as err:
            return summary(err)

    def wait(self) -> list[str]:
        """Wait for every run started; returns the hooks that gave up."""
        for future in self.pending:
            future.result()
        self.pending.clear()
        runs = self.state.data["runs"].values()
        return sorted({r["hook"] for r in runs if r["status"] == "failed"})

    def close(self) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Only(dict):
    """format_map values: a brace that names no placeholder is an error that says which exist."""

    def __missing__(self, key):
        raise ValueError(f"{{{key}}} is no placeholder; the placeholders are {', '.join(PLACEHOLDERS)}")


def _post(hook: Hook, values: dict, timeout: float) -> str | None:
    import urllib.error
    import urllib.request

    url = os.environ.get(hook.url_env or "", "")
    headers = {"Content-Type": "application/json", "User-Agent": "wandb-image-pipeline registry watch"}
    if hook.token_env:
        headers["Authorization"] = f"Bearer {os.environ.get(hook.token_env, '')}"
    request = urllib.request.Request(url, data=json.dumps({"hook": hook.name, **values}).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - the user's own URL
            return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"  # never the URL: it may hold a secret
    except urllib.error.URLError as err:
        return f"cannot reach the webhook ({type(err.reason).__name__})"
