"""Settings: `app/.env` plus the environment, and the one decision of online vs offline.

No wandb and no torch imported here: every script calls `load_settings()` right after parsing
its flags, and `--help` must stay fast. Where the mode is not explicit, the SDK's own rules for
the host and the key are asked (app/tracking/credentials.py), lazily.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from app.errors import UserError, summary
from app.progress import verbose

ENV_FILE = Path(__file__).resolve().parents[1] / ".env"  # app/.env, beside app/.env.example

DEFAULT_PROJECT = "wandb-image-pipeline"
# The embedded store lives under the working directory, like W&B's own `wandb/` run
# folder, so two checkouts never share one by accident.
DEFAULT_STORE_DIR = "artifact-store"

OFFLINE_NOTICE = (
    "W&B: no API key configured, so this runs offline with the embedded artifact store "
    "(set WANDB_API_KEY in app/.env or run `wandb login` to go online)."
)


@dataclass(frozen=True)
class Settings:
    mode: str  # "online" or "offline"
    project: str
    entity: str | None
    model_retrain: str | None  # WANDB_MODEL_RETRAIN: ref of the model --retrain starts from
    model_eval: str | None  # WANDB_MODEL_EVAL: ref of the model evaluate.py checks
    store_dir: Path  # the embedded backend's artifact store (offline only)
    base_url: str

    @property
    def offline(self) -> bool:
        return self.mode == "offline"


def load_env_file(path: Path = ENV_FILE) -> None:
    """Load `app/.env` into os.environ without overriding what the shell already set.

    python-dotenv skips a line it cannot parse with only a log warning; a typo in the file
    that holds the API key deserves a hard stop, so parse errors are refused here.
    """
    if not path.exists():
        return
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as stream:
            bad = [b.original.line for b in parse_stream(stream) if b.error]
    except (OSError, UnicodeDecodeError) as err:  # a folder, unreadable, not UTF-8 text
        raise UserError(
            f"{path} cannot be read as a settings file ({summary(err)}). It must be a UTF-8 text file of "
            "KEY=value lines (copy app/.env.example); remove or replace it."
        ) from err
    if bad:
        raise UserError(
            f"{path} has malformed line(s) {', '.join(map(str, bad))}. "
            "Each line must be KEY=value (see app/.env.example)."
        )
    for key, value in dotenv_values(path).items():
        # Empty values (a copied .env.example) mean "not set", not "set to nothing".
        if value and key not in os.environ:
            os.environ[key] = value


def key_configured(base_url: str) -> bool:
    """WANDB_API_KEY (environment or app/.env), or the key `wandb login` stored for this host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    from app.tracking.credentials import netrc_api_key  # the SDK's own reading of netrc

    return bool(netrc_api_key(base_url))


def decide_mode(base_url: str) -> str:
    """WANDB_MODE if set; else online when an API key is configured; else offline."""
    explicit = os.environ.get("WANDB_MODE", "").strip().lower()
    if explicit:
        if explicit in ("offline", "dryrun", "disabled"):
            return "offline"
        if explicit in ("online", "run"):
            return "online"
        raise UserError(f"WANDB_MODE={explicit!r} is not a mode; use 'online' or 'offline'.")
    if key_configured(base_url):
        return "online"
    return "offline"


def resolve_base_url() -> str:
    """The W&B host: WANDB_BASE_URL, else what `wandb login --host` saved (read by the SDK).
    An explicitly offline run needs no host, and does not load the SDK's settings for one."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    if os.environ.get("WANDB_MODE", "").strip().lower() in ("offline", "dryrun", "disabled"):
        return ""
    from app.tracking.credentials import sdk_base_url

    return sdk_base_url()


_settings: Settings | None = None


def load_settings() -> Settings:
    """Read .env and decide the mode once per process (the notice prints once)."""
    global _settings
    if _settings is None:
        load_env_file()
        base_url = resolve_base_url()
        chosen = bool(os.environ.get("WANDB_MODE", "").strip())
        mode = decide_mode(base_url)
        # Pin the decision so every wandb.init in this process (and its children) agrees.
        os.environ["WANDB_MODE"] = mode
        store_dir = Path(os.environ.get("PIPELINE_STORE_DIR") or DEFAULT_STORE_DIR).resolve()
        # Offline for want of a key: said when this folder's store is new (the first step), and
        # every time with -v; not again on every later step.
        if mode == "offline" and not chosen and (verbose() or not store_dir.exists()):
            print(OFFLINE_NOTICE, file=sys.stderr)
        _settings = Settings(
            mode=mode,
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            entity=os.environ.get("WANDB_ENTITY") or None,
            model_retrain=os.environ.get("WANDB_MODEL_RETRAIN") or None,
            model_eval=os.environ.get("WANDB_MODEL_EVAL") or None,
            store_dir=store_dir,
            base_url=base_url,
        )
    return _settings
