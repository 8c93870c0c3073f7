"""A W&B run with the hand-off operations attached, on either backend."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import wandb

from app.errors import LOGGED, UserError
from app.names import TRAINING_JOBS
from app.progress import say
from app.tracking.settings import Settings, load_settings
from app.tracking.backends import ArtifactVersion, Backend, make_backend
from app.tracking.sdk_internals import quiet_run_settings

# Keys a run config must never carry, whatever a caller passes in.
_SECRET_KEYS = {"wandb_api_key", "api_key"}


def check_reachable(base_url: str, timeout: float = 5.0) -> None:
    """Online mode with no network should fail in seconds with a fix, not hang in wandb.init."""
    parsed = urlparse(base_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"cannot reach W&B at {base_url} ({err.__class__.__name__}: {err}). Check the network, "
            "or run offline with the embedded store: WANDB_MODE=offline."
        ) from err


def connected_backend(settings: Settings) -> Backend:
    """The backend for this mode; online, only once W&B answers and accepts the key (a bad key
    or no network ends here, in seconds, with the fix, before any run or lookup starts)."""
    backend = make_backend(settings)
    if not settings.offline:
        check_reachable(settings.base_url)
        backend.api  # noqa: B018 - verifies the key with one request (UserError when refused)
    return backend


class Run:
    """What a pipeline script holds: log metrics and media, use and log artifacts."""

    def __init__(self, wandb_run, backend, settings: Settings, scratch_dir: Path):
        self.wandb_run = wandb_run
        self.backend = backend
        self.settings = settings
        self.scratch_dir = scratch_dir  # online inputs are downloaded here; removed when the run ends
        # After init, so a sweep's values win over the script's defaults.
        self.config = dict(wandb_run.config)

    @property
    def id(self) -> str:
        return self.wandb_run.id

    @property
    def dir(self) -> Path:
        return Path(self.wandb_run.dir).parent

    def lineage_entry(self) -> dict:
        return {"id": self.wandb_run.id, "name": self.wandb_run.name, "job_type": self.wandb_run.job_type}

    # -- artifacts -----------------------------------------------------------------------

    def use(self, ref: str, expected_type: str | None = None, lineage_optional: bool = False) -> ArtifactVersion:
        """Consume an artifact inside this run: verified local files plus metadata.
        `lineage_optional`: a read-only store still serves the files (the use goes unrecorded)."""
        return self.backend.use(self, ref, expected_type, lineage_optional)

    def log_artifact(self, name: str, type: str, files: dict[str, Path], metadata: dict,
                     aliases: list[str] | tuple = (), references: dict[str, str] | None = None,
                     description: str | None = None) -> ArtifactVersion:
        """`references`: {name inside the artifact: URI} of files left where they are (checksummed);
        `description`: the version's Markdown description in W&B (a model's card)."""
        logged = self.backend.log(self, name, type, files, metadata, list(aliases), references or {}, description)
        LOGGED.append(logged.ref)
        return logged

    def versions(self, name: str) -> list[ArtifactVersion]:
        """The live versions of this project's collection `name` ([] while it has none)."""
        if self.backend.lookup(f"{name}:latest") is None:
            return []
        return self.backend.list(name, lineage=False)

    def delete(self, versions: list[ArtifactVersion], with_aliases: bool = False) -> None:
        """Delete these versions of this project (`with_aliases`: aliases and all, `latest` too)."""
        self.backend.delete(versions, with_aliases)

    def link(self, ref: str, collection: str, aliases: list[str],
             guard: dict[str, int | None] | None = None) -> ArtifactVersion:
        linked = self.backend.link(ref, collection, aliases, run=self, guard=guard)
        LOGGED.append(linked.ref)
        return linked

    # -- metrics and media ---------------------------------------------------------------

    def log(self, values: dict) -> None:
        self.wandb_run.log(values)

    def update_config(self, values: dict) -> None:
        self.wandb_run.config.update(values, allow_val_change=True)
        self.config.update(values)

    def summary(self, values: dict) -> None:
        self.wandb_run.summary.update(values)

    def define_metric(self, name: str, step_metric: str | None = None, summary: str | None = None) -> None:
        self.wandb_run.define_metric(name, step_metric=step_metric, summary=summary)

    def image(self, data, caption: str | None = None):
        """A W&B image from a matplotlib figure, PNG bytes (a figure already rendered) or a uint8
        array (no rescaling). A figure is rendered now and closed, so a script that logs many does
        not keep them all open."""
        if isinstance(data, bytes):
            from PIL import Image

            data = Image.open(io.BytesIO(data))
        image = wandb.Image(data, caption=caption)
        if hasattr(data, "savefig"):
            import matplotlib.pyplot as plt

            plt.close(data)
        return image

    def html(self, page: str):
        """A self-contained HTML page for the run (W&B's stylesheet not injected)."""
        return wandb.Html(page, inject=False)

    def table(self, columns: list[str], rows: list[list]):
        return wandb.Table(columns=columns, data=rows)

    def histogram(self, values, bins: int = 10):
        """A W&B histogram of `values` (serve.py's confidences)."""
        return wandb.Histogram(values, num_bins=bins)

    def confusion_matrix(self, y_true, y_pred, class_names: list[str], title: str):
        return wandb.plot.confusion_matrix(
            y_true=list(map(int, y_true)), preds=list(map(int, y_pred)), class_names=class_names, title=title,
        )


class SilentRun:
    """What a process that works inside another process's run holds (torchrun's ranks other
    than 0): the same calls as Run, and nothing is logged."""

    def log(self, values: dict) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def update_config(self, values: dict) -> None:
        pass

    def define_metric(self, name: str, step_metric: str | None = None, summary: str | None = None) -> None:
        pass

    def log_artifact(self, name, type, files, metadata, aliases=(), references=None, description=None) -> None:
        return None

    id = ""  # the run is rank 0's

    def lineage_entry(self) -> dict:
        return {"id": self.id, "name": "", "job_type": ""}

    def versions(self, name: str) -> list:
        return []

    def delete(self, versions: list, with_aliases: bool = False) -> None:
        pass


@contextlib.contextmanager
def start_run(job_type: str, config: dict, *, group: str | None = None, name: str | None = None,
              writes: bool = True, resume_id: str | None = None, announce: bool = True):
    """A W&B run: `with start_run("train", cfg) as run: ...`. `resume_id` continues that run
    (W&B's resume="allow": online the same run; offline a new folder with the same run id).

    An exception or Ctrl-C inside marks the run failed (exit code 1) and re-raises, so a
    broken run never looks finished. `writes`: the run logs to the store, so a store that
    cannot be written is refused before the run starts (predict.py only reads). A run that
    trains is held by this process while it runs (backend.hold_run): a second process that
    would resume it meanwhile is refused. `announce`: say where an offline run is when it ends
    (a sweep's trials leave it to -v: the agent's ranking names their models).
    """
    settings = load_settings()
    connected = backend()  # the process's one connection: a lookup before the run already made it
    if writes:
        connected.check_writable()
    clean_config = {k: v for k, v in config.items() if k.lower() not in _SECRET_KEYS}
    training = job_type in TRAINING_JOBS
    with contextlib.ExitStack() as held:
        if training and resume_id:  # before init: a refused resume starts no second run folder
            held.enter_context(connected.hold_run(resume_id, resuming=True))
        try:
            wandb_run = wandb.init(
                project=settings.project,
                entity=settings.entity,
                job_type=job_type,
                config=clean_config,
                group=group,
                name=name,
                id=resume_id,
                resume="allow" if resume_id else None,
                mode=settings.mode,
                settings=wandb.Settings(**quiet_run_settings()),
            )
        except wandb.errors.Error as err:  # CommError, AuthenticationError, UsageError: say so, no traceback
            raise UserError(f"W&B could not start the run ({err}). Check `wandb login` / WANDB_API_KEY in "
                            "app/.env and the project and entity names, or run offline with WANDB_MODE=offline.") from err
        if training and not resume_id:
            held.enter_context(connected.hold_run(wandb_run.id, resuming=False))
        scratch = Path(tempfile.mkdtemp(prefix="pipeline-inputs-"))
        run = Run(wandb_run, connected, settings, scratch)
        try:
            yield run
        except BaseException:
            wandb_run.finish(exit_code=1)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        wandb_run.finish()
    if settings.offline:
        say(f"W&B run (offline): {run.dir}  (upload later with `wandb sync {run.dir}`)", verbose_only=not announce)


_backend = None


def backend() -> Backend:
    """The registry operations that need no run (list, link, alias, peek, find); connected once
    per process."""
    global _backend
    if _backend is None:
        _backend = connected_backend(load_settings())
    return _backend


def sweep_env() -> dict:
    """Sweep identity of this process, when it runs as a trial (W&B agent or local controller)."""
    return {k: os.environ[k] for k in ("WANDB_SWEEP_ID", "PIPELINE_SWEEP_TRIAL") if k in os.environ}
