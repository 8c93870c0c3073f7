"""hooks.yaml: which alias moves in the model registry run which command or call which webhook
(registry.py watch). The schema, checked before anything is watched:

    retries: 3             # a failing hook is tried again this many times (default 3)
    backoff_seconds: 5     # first wait before a retry, doubled each time (default 5)
    timeout_seconds: 600   # a command or webhook call taking longer has failed (default 600)
    hooks:
      - name: evaluate-new-models          # unique; what ran is recorded under it
        collection: "wandb-registry-model/*"   # shell pattern on the registry collection
        alias: to_evaluate                 # the alias whose move triggers it
        command: [python, app/pipelines/evaluate.py, --model, "{version}", --promote]
      - name: tell-the-team
        collection: "wandb-registry-model/digits-*"
        alias: production
        webhook:
          url_env: TEAM_WEBHOOK_URL        # the URL from the environment (it often holds a secret)
          token_env: TEAM_WEBHOOK_TOKEN    # optional: sent as "Authorization: Bearer <token>"

A command is a list (no shell); `{version}`, `{collection}`, `{alias}` and `{digest}` in its items
are replaced, and the same values are in its environment as HOOK_VERSION, HOOK_COLLECTION,
HOOK_ALIAS, HOOK_DIGEST. A webhook gets them as a JSON POST. Secrets are never in the file: a
webhook's URL and token are read from the environment variables it names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.errors import UserError

PLACEHOLDERS = ("version", "collection", "alias", "digest")


@dataclass(frozen=True)
class Hook:
    name: str
    collection: str  # fnmatch pattern
    alias: str
    command: tuple[str, ...] | None = None
    url_env: str | None = None
    token_env: str | None = None

    def matches(self, collection: str, alias: str) -> bool:
        from fnmatch import fnmatchcase

        return alias == self.alias and fnmatchcase(collection, self.collection)


@dataclass(frozen=True)
class Hooks:
    hooks: tuple[Hook, ...]
    retries: int = 3
    backoff_seconds: float = 5.0
    timeout_seconds: float = 600.0

    @property
    def aliases(self) -> list[str]:
        return sorted({h.alias for h in self.hooks})


def load_hooks(path: Path) -> Hooks:
    """hooks.yaml read and checked; every mistake named with its place in the file."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; copy hooks.example.yaml to {path} and edit it.") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML ({err}).") from err
    if not isinstance(document, dict) or not isinstance(document.get("hooks"), list) or not document["hooks"]:
        raise UserError(f"{path} needs a list `hooks:` of at least one hook (see hooks.example.yaml).")
    unknown = set(document) - {"hooks", "retries", "backoff_seconds", "timeout_seconds"}
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; the keys are hooks, retries, "
                        "backoff_seconds, timeout_seconds.")
    hooks = [_hook(entry, k, path) for k, entry in enumerate(document["hooks"])]
    names = [h.name for h in hooks]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: hook names must be unique (what ran is recorded by name): "
                        f"{', '.join(sorted({n for n in names if names.count(n) > 1}))} repeat.")
    settings = {}
    for key, kind, minimum in (("retries", int, 0), ("backoff_seconds", float, 0), ("timeout_seconds", float, 1)):
        if key in document:
            value = document[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
                raise UserError(f"{path}: {key} must be a number of at least {minimum}, got {value!r}.")
            settings[key] = kind(value)
    return Hooks(hooks=tuple(hooks), **settings)


def _hook(entry, k: int, path: Path) -> Hook:
    where = f"{path}: hooks[{k}]"
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be a mapping with name, collection, alias and command or webhook.")
    unknown = set(entry) - {"name", "collection", "alias", "command", "webhook"}
    missing = [key for key in ("name", "collection", "alias") if not isinstance(entry.get(key), str) or not entry[key]]
    if unknown or missing:
        raise UserError(f"{where}: " + "; ".join(
            ([f"unknown key(s) {', '.join(sorted(unknown))}"] if unknown else []) +
            ([f"needs {', '.join(missing)} (text)"] if missing else [])) + ".")
    if ("command" in entry) == ("webhook" in entry):
        raise UserError(f"{where} ({entry['name']}): give exactly one of command (a list) or webhook (url_env).")
    if "command" in entry:
        command = entry["command"]
        if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
            raise UserError(f"{where} ({entry['name']}): command must be a non-empty list of words, e.g. "
                            "[python, app/pipelines/evaluate.py, --model, \"{version}\"] (no shell).")
        return Hook(entry["name"], entry["collection"], entry["alias"], command=tuple(str(c) for c in command))
    webhook = entry["webhook"]
    if not isinstance(webhook, dict) or not isinstance(webhook.get("url_env"), str) or \
            set(webhook) - {"url_env", "token_env"}:
        raise UserError(f"{where} ({entry['name']}): webhook takes url_env (the name of the environment variable "
                        "holding the URL) and optionally token_env; a URL or token is never written in the file.")
    return Hook(entry["name"], entry["collection"], entry["alias"], url_env=webhook["url_env"],
                token_env=webhook.get("token_env"))


def check_environment(hooks: Hooks) -> None:
    """Every webhook's variables are set: refused before watching, not at the first move."""
    missing = sorted({name for h in hooks.hooks for name in (h.url_env, h.token_env)
                      if name and not os.environ.get(name)})
    if missing:
        raise UserError(f"the webhook variable(s) {', '.join(missing)} are not set; export them (or add them to "
                        "app/.env) before `registry.py watch`.")
