"""What `registry.py prune` may delete: the plan, on either backend, from the registry's listing.

A version is kept when it is one of the newest `keep` of its collection, when an alias other
than `latest` holds it (production, candidate, best ...), when a run used it (lineage: an
evaluation's model, a training run's dataset), or when a registry version links to it. Only the
project's own versions are deleted; registry versions are links and stay.
"""
from __future__ import annotations

from collections import defaultdict

from app.names import LATEST, REGISTRY


def prune_plan(versions: list, keep: int) -> list:
    """The versions (ArtifactVersion rows of backend.list()) that nothing holds, beyond the newest
    `keep` of each project collection, oldest first."""
    linked = {v.source.rsplit("/", 1)[-1] for v in versions if v.source}  # "entity/project/name:v3" -> "name:v3"
    by_collection = defaultdict(list)
    for version in versions:
        if not version.collection.startswith(REGISTRY + "/"):
            by_collection[version.collection].append(version)
    doomed = []
    for rows in by_collection.values():
        rows.sort(key=lambda v: v.version)
        for version in rows[:-keep]:
            held = set(version.aliases) - {LATEST}
            if not held and not version.used_by and version.ref.rsplit("/", 1)[-1] not in linked:
                doomed.append(version)
    return doomed
