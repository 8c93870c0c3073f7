"""The wandb SDK internals this project relies on, each probed in one place with a fallback.

The public API has no call for these; each function below uses the SDK's own where it is found
and the same computation otherwise, and tests/test_store.py fails when one of them goes away or
starts to disagree with its fallback: the signal to look again. (The netrc reader, the fourth,
lives with the credentials: app/tracking/credentials.py.)
"""
from __future__ import annotations

from pathlib import Path

import wandb


def sdk_md5():
    """wandb.sdk.lib.hashutil.md5_file_b64, or None where this SDK has none by that name."""
    try:
        from wandb.sdk.lib.hashutil import md5_file_b64
    except ImportError:
        return None
    return md5_file_b64


def md5_b64_fallback(path: Path) -> str:
    """What W&B's manifests record for a file: the base64 of its MD5 (computed in app/data, where
    the referenced images of a split are checked without W&B)."""
    from app.data.locations import file_md5_b64

    return file_md5_b64(path)


def file_digest(path: Path) -> str:
    """A file's digest as W&B's artifact manifests record it."""
    md5 = sdk_md5()
    return md5(str(path)) if md5 is not None else md5_b64_fallback(path)


def manifest_digests(artifact: wandb.Artifact, files: dict[str, Path]) -> dict[str, str]:
    """{name in the artifact: digest} of an artifact built from `files`: its manifest's entries
    (Artifact.manifest is not documented), else each file's digest computed the same way."""
    entries = getattr(getattr(artifact, "manifest", None), "entries", None)
    if isinstance(entries, dict) and set(files) <= set(entries):
        return {name: entries[name].digest for name in files}
    return {name: file_digest(path) for name, path in files.items()}


def reference_digests(artifact: wandb.Artifact, references: dict[str, str]) -> dict[str, dict]:
    """{name: {"uri", "digest"}} of an artifact's references (file://, s3://, gs://), as its manifest
    records them (else each source's digest now, as W&B computes it): what the offline store keeps."""
    from app.data.locations import current_digests

    entries = getattr(getattr(artifact, "manifest", None), "entries", None)
    if isinstance(entries, dict) and set(references) <= set(entries):
        return {name: {"uri": uri, "digest": entries[name].digest} for name, uri in references.items()}
    now = current_digests(list(references.values()))
    return {name: {"uri": uri, "digest": now[uri]} for name, uri in references.items()}


def quiet_run_settings() -> dict:
    """Settings for wandb.init: quiet (silent unless -v: W&B's own `wandb:` lines are detail), a
    minute to start, and no system-stats sampling where the SDK offers it (`x_disable_stats`, an
    experimental setting: left out where it is gone)."""
    from app.progress import verbose

    settings = {"quiet": True, "silent": not verbose(), "init_timeout": 60}
    if "x_disable_stats" in getattr(wandb.Settings, "model_fields", {}):
        settings["x_disable_stats"] = True
    return settings
