"""Artifact references in W&B's forms.

    name                      -> name:latest
    name:alias | name:vN
    project/name:alias, entity/project/name:alias
    wandb-registry-model/collection:alias (optionally org-prefixed)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import UserError
from app.names import LATEST, REGISTRY

# A name or an alias in a ref. W&B itself refuses '/' and ':' in aliases; the rest of what this
# leaves out (spaces, newlines, an empty alias) no ref could name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class Ref:
    name: str
    alias: str = LATEST  # an alias or "vN"
    project: str | None = None
    entity: str | None = None
    registry: bool = False  # True for wandb-registry-model/<collection>
    org: str | None = None  # a registry ref's organization prefix, kept: a user in two orgs needs it

    @property
    def version(self) -> int | None:
        match = _VERSION.match(self.alias)
        return int(match.group(1)) if match else None

    @property
    def scope(self) -> str | None:
        """The namespace a collection lives in: the registry, or a project."""
        return REGISTRY if self.registry else self.project

    def __str__(self) -> str:
        if self.registry:
            return f"{self.org + '/' if self.org else ''}{REGISTRY}/{self.name}:{self.alias}"
        prefix = "/".join(p for p in (self.entity, self.project) if p)
        return f"{prefix + '/' if prefix else ''}{self.name}:{self.alias}"


def parse_ref(text: str) -> Ref:
    """Parse a ref, or fail with a message showing the accepted forms."""
    raw = text.strip()
    path, colon, alias = raw.partition(":")
    alias = alias or ("" if colon else LATEST)  # "name:" is a typo, not name:latest
    parts = path.split("/")
    bad = (
        not raw
        or raw.count(":") > 1
        or len(parts) > 3
        or not all(NAME.fullmatch(p) for p in parts)
        or not NAME.fullmatch(alias)
    )
    if bad:
        raise UserError(
            f"{text!r} is not an artifact ref. Use name, name:alias, name:vN, "
            f"entity/project/name:alias or {REGISTRY}/<collection>:alias."
        )
    name = parts[-1]
    if REGISTRY in parts[:-1]:
        # "<org>/wandb-registry-model/<collection>" or "wandb-registry-model/<collection>"
        if len(parts) == 3 and parts[1] != REGISTRY or len(parts) == 2 and parts[0] != REGISTRY:
            raise UserError(f"{text!r} is not a registry ref; use [ORG/]{REGISTRY}/<collection>:alias.")
        return Ref(name=name, alias=alias, registry=True, org=parts[0] if len(parts) == 3 else None)
    project = parts[-2] if len(parts) >= 2 else None
    entity = parts[-3] if len(parts) == 3 else None
    return Ref(name=name, alias=alias, project=project, entity=entity)
