"""Shared fixtures: a hermetic offline environment and a runner for the real scripts."""
from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import in_process

# make test runs one pytest-xdist worker per core, and each worker (with every script it starts)
# would take torch's default of one thread per core: four busy threads on two cores ran the
# training steps 1.7x slower than one thread per worker. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") != "1":
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# W&B's own folders for what tests do in this process (in-process stores and runs) go under a temp
# folder, not the user's home: W&B keeps the staged copy of a logged file in its data folder until
# it is uploaded, so offline that is for good (tests/test_store.py alone left 39 files a run there).
_WANDB_FOLDERS = Path(tempfile.mkdtemp(prefix="pytest-wandb-"))
atexit.register(shutil.rmtree, _WANDB_FOLDERS, True)
os.environ.update({"WANDB_DATA_DIR": str(_WANDB_FOLDERS / "data"), "WANDB_CACHE_DIR": str(_WANDB_FOLDERS / "cache")})

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "app" / "pipelines"
sys.path.insert(0, str(REPO / "benchmarks"))
import offline_runs  # noqa: E402  (the folders of a hermetic W&B environment, shared with the benchmarks)
# Any network call fails loudly: this host cannot resolve.
UNRESOLVABLE = "http://wandb-unreachable.invalid"


def offline_env(workdir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PIPELINE_"))}
    env.update({"WANDB_BASE_URL": UNRESOLVABLE, **offline_runs.folders(workdir), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@dataclass
class Workspace:
    """A temp working directory where the scripts run offline, as a user would run them."""

    path: Path
    env: dict

    def run(self, script: str, *args: str, check: bool = True, timeout: float | None = None,
            env: dict | None = None, process: bool | None = None) -> subprocess.CompletedProcess:
        """Run pipeline script `script` with `args` as a user would, and what it printed and
        returned. In this process (in_process.call) unless `process` asks for a process of its own
        or the run needs one (in_process.needs_process: a timeout, sweeps, streaming workers,
        torchrun, serve)."""
        env = env or self.env
        if process is None:
            process = timeout is not None or in_process.needs_process(script, args, env)
        if process:
            proc = subprocess.run(
                [sys.executable, str(SCRIPTS / f"{script}.py"), *args],
                cwd=self.path, env=env, capture_output=True, text=True, timeout=timeout or 600,
            )
        else:
            proc = in_process.call(SCRIPTS / f"{script}.py", args, cwd=self.path, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"{script} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def enter(self, monkeypatch) -> None:
        """Make this process see the store as the scripts do: the workspace's environment (every
        W&B or pipeline variable it leaves out removed: an earlier test may have left one), its
        folder as the working directory, settings read afresh."""
        import app.tracking.settings

        for key in [k for k in os.environ if k.startswith(("WANDB_", "PIPELINE_")) and k not in self.env]:
            monkeypatch.delenv(key)
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(self.path)
        monkeypatch.setattr(app.tracking.settings, "_settings", None)

    def registry(self, collection: str | None = None) -> list[dict]:
        out = self.run("registry", "list", *([collection] if collection else []), "--all", "--json").stdout
        return json.loads(out)["versions"]

    def run_json(self, script: str, *args: str) -> list[dict]:
        """The versions a `registry.py list ... --json` lists."""
        return json.loads(self.run(script, *args, "--json").stdout)["versions"]

    def versions(self, collection: str) -> list[dict]:
        return [v for v in self.registry() if v["collection"] == collection]

    @property
    def store(self) -> Path:
        return self.path / "artifact-store"

    def store_snapshot(self) -> dict:
        """Every file under the store with its bytes, to prove a refusal changed nothing (locks
        hold no content: the store's `.lock`, and a killed run's `runs/<id>.lock`)."""
        if not self.store.exists():
            return {}
        return {str(p.relative_to(self.store)): p.read_bytes() for p in sorted(self.store.rglob("*"))
                if p.is_file() and ".lock" not in (p.name, p.suffix)}

    def run_dirs(self) -> list[Path]:
        return sorted((self.path / "wandb").glob("offline-run-*"))


def make_workspace(path: Path, **extra: str) -> Workspace:
    path.mkdir(parents=True, exist_ok=True)
    return Workspace(path=path, env=offline_env(path, **extra))


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return make_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Workspace:
    """data_prep --dataset digits -> train with no flag at all (every default: 10 epochs of the
    convnet, the step budget's, on the one dataset there is), once per session, shared by
    pytest-xdist's workers (the first to need it builds it under a lock, the others wait for it:
    31 s of training a worker saved); tests only read it. What train printed is kept in
    `train.stdout` and `train.stderr` beside the store."""
    import fcntl

    under_xdist = "PYTEST_XDIST_WORKER" in os.environ  # each worker's temp folder sits in the session's
    shared = tmp_path_factory.getbasetemp().parent if under_xdist else tmp_path_factory.getbasetemp()
    ws = make_workspace(shared / "trained")
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (ws.path / ".built").exists():
            ws.run("data_prep", "--dataset", "digits")
            baseline = ws.run("train")
            (ws.path / "train.stdout").write_text(baseline.stdout)
            (ws.path / "train.stderr").write_text(baseline.stderr)
            (ws.path / ".built").touch()
    return ws


def pytest_collection_modifyitems(config, items):
    """The tests that read `trained` run after the others (stable order otherwise): pytest-xdist
    gives each worker a half of the list to start with, and with those tests in both halves the
    second worker to need `trained` sat idle until the first had built it (up to 35 s)."""
    items.sort(key=lambda item: "trained" in getattr(item, "fixturenames", ()))


@pytest.fixture
def trained_copy(trained, tmp_path) -> Workspace:
    """A private copy of `trained` (its store), for tests that change what is stored."""
    ws = make_workspace(tmp_path / "trained-copy")
    shutil.copytree(trained.store, ws.store)
    return ws


def leet_records(run_dir: Path) -> list[dict]:
    """The records of an offline run, read with W&B's own `wandb leet inspect --json` (a process
    of 0.75 s here: read once while the run's log is unchanged)."""
    [log] = Path(run_dir).glob("*.wandb")
    stat = log.stat()
    return _leet_records(str(log), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _leet_records(log: str, size: int, mtime_ns: int) -> list[dict]:
    wandb_cli = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", log],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def runs_of(ws: Workspace, job_type: str) -> list[Path]:
    """The workspace's offline run folders whose run has `job_type`, oldest first."""
    return [d for d in ws.run_dirs()
            if any(r["type"] == "run" and r["run"]["job_type"] == job_type for r in leet_records(d))]


@pytest.fixture(scope="session")
def digits_model(trained):
    """The model `trained` logged (train.py's defaults on digits), loaded in this process with the
    split it was trained on: (model, recipe, split). Shared with `trained`: no second training."""
    from app.data.split_files import read_split
    from app.models.files import load_model

    [model_version] = trained.versions("digits-convnet")
    model, recipe = load_model(trained.store / "objects" / model_version["digest"])
    [dataset] = trained.versions("digits-split")
    return model.eval(), recipe, read_split(trained.store / "objects" / dataset["digest"])


def small_sweep(tmp_path: Path, cap: int | None = None, **changes) -> Path:
    """The repo's sweep.yaml for a test, written to `tmp_path`: trials of 1 or 2 epochs of a narrow
    convnet (width 8 or 16, batch 64 or 128), `cap` as its run_cap, `changes` over its keys (a
    None value removes the key). The tests check a sweep's mechanics, not what it finds: a trial
    epoch of the file's widest at batch 32 takes 6.5 s on one core, of width 16 at 128 about 1."""
    import yaml

    from app.tuning.sweep_config import load_sweep_config

    config = load_sweep_config(REPO / "sweep.yaml")
    config["parameters"].update(epochs={"values": [1, 2]}, width={"values": [8, 16]},
                                batch_size={"values": [64, 128]})
    if cap:
        config["run_cap"] = cap
    config.update(changes)
    config = {key: value for key, value in config.items() if value is not None}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sweep_state(ws: Workspace) -> dict:
    """The local sweep's state file in the workspace's store (one sweep)."""
    [path] = (ws.store / "sweeps").glob("*.json")
    return json.loads(path.read_text())


def recipe_of(config, shape, class_names, dataset: dict | None = None, preprocessing=None):
    """A Recipe for a test: an input of `shape` (channels, height, width) seen as it is, or as
    `preprocessing` (an InputSpec, or its dict) says."""
    from app.recipe import DatasetRef, InputSpec, Recipe

    spec = InputSpec.from_dict(preprocessing) if isinstance(preprocessing, dict) else preprocessing
    return Recipe(config, spec or InputSpec.plain(shape), tuple(class_names), DatasetRef(**(dataset or {})))
