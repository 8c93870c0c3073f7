"""`registry.py push`: after `wandb sync`, replay the embedded store's lineage and registry into W&B.

`wandb sync` uploads offline runs and the artifacts they logged (keeping their run ids), but an
offline run cannot declare its inputs, and registry links and aliases exist only in the store.
Push closes that gap through W&B's public API:

- every stored version is matched to its synced artifact: logged by the same run id, same digest;
  a version whose run is not in W&B yet is reported with the `wandb sync` command, and nothing
  that depends on it is pushed;
- every recorded use becomes a declared input of the synced run (`Run.use_artifact`);
- every registry version is linked into `wandb-registry-model/<collection>`, in version order,
  with the aliases it carries in the store, so each alias ends on the same version as offline;
- every stored description (a model's card, as evaluate.py completed it) becomes the synced
  artifact's `Artifact.description`.

Each step is checked against W&B before it is planned, so a second push plans nothing, and a
push that failed part-way is completed by running it again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import wandb

from app.errors import UserError
from app.names import LATEST, REGISTRY
from app.tracking.backends import OnlineBackend, is_not_found
from app.tracking.refs import parse_ref
from app.tracking.store import Store


@dataclass
class Step:
    kind: str  # "use", "link", "describe"
    text: str
    apply: Callable[[], None] = field(repr=False)


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    unsynced: dict[str, str] = field(default_factory=dict)  # run id -> the `wandb sync` command


def sync_command(run_id: str, wandb_dir: Path) -> str:
    found = sorted(wandb_dir.glob(f"offline-run-*-{run_id}"))
    return f"wandb sync {found[-1] if found else wandb_dir / f'offline-run-*-{run_id}'}"


class Pusher:
    def __init__(self, online: OnlineBackend, store: Store, wandb_dir: Path):
        self.online = online
        self.store = store
        self.wandb_dir = wandb_dir
        self.project = online.settings.project
        self.entity = online.settings.entity or online.api.default_entity
        self._runs: dict[str, object] = {}

    def _run(self, run_id: str, plan: Plan):
        """The synced run, or None (and its sync command noted) while it is not in W&B."""
        if run_id not in self._runs:
            try:
                self._runs[run_id] = self.online.api.run(f"{self.entity}/{self.project}/{run_id}")
                self._runs[run_id].id  # noqa: B018 - loads it: a missing run raises here
            except wandb.errors.CommError as err:
                if "Could not find run" not in str(err) and not is_not_found(err):
                    raise UserError(f"W&B could not answer for run {run_id} ({err}).") from err
                self._runs[run_id] = None
        if self._runs[run_id] is None:
            plan.unsynced[run_id] = sync_command(run_id, self.wandb_dir)
        return self._runs[run_id]

    def _synced_artifact(self, coll: dict, version: dict, plan: Plan):
        """The artifact `wandb sync` uploaded for this stored version, or None."""
        run_id = (version.get("logged_by") or {}).get("id")
        run = self._run(run_id, plan) if run_id else None
        if run is None:
            return None
        return next((a for a in self.online.paged(f"the outputs of run {run_id}", run.logged_artifacts())
                     if a.digest == version["digest"] and a.name.split(":")[0] == coll["name"]), None)

    def plan(self) -> Plan:
        plan = Plan()
        synced = {}  # "name:vN" (project scope) -> the synced artifact
        for coll in self.store.collections(self.project):
            for version in coll["versions"]:
                art = self._synced_artifact(coll, version, plan)
                if art is None:
                    continue
                synced[f"{coll['name']}:v{version['version']}"] = art
                text = version.get("description")
                if text and art.description != text:
                    plan.steps.append(Step("describe", f"{coll['name']}:v{version['version']}: its description "
                                                       "(the model card)", lambda art=art, text=text: describe(art, text)))
                for user in version["used_by"]:
                    run = self._run(user["id"], plan)
                    if run is None:
                        continue
                    declared = {a.id for a in self.online.paged(f"the inputs of run {user['id']}",
                                                                 run.used_artifacts())}
                    if art.id not in declared:
                        plan.steps.append(Step("use", f"run {user['id']} ({user.get('job_type')}) used "
                                                      f"{coll['name']}:v{version['version']}",
                                               lambda run=run, art=art: run.use_artifact(art)))
        for coll in self.store.collections(REGISTRY):
            target = f"{REGISTRY}/{coll['name']}"
            online_versions = self.online.paged(target, self._registry_versions(coll))
            for version in coll["versions"]:
                aliases = sorted(a for a, v in coll["aliases"].items() if v == version["version"] and a != LATEST)
                source = parse_ref(version["source"])
                art = synced.get(f"{source.name}:{source.alias}") if source.project in (None, self.project) else None
                if art is None:
                    continue  # its source is not in W&B yet (reported above)
                member = next((a for a in online_versions if a.digest == version["digest"]), None)
                if member is not None and set(aliases) <= set(member.aliases):
                    continue
                plan.steps.append(Step("link", f"{target}: link {version['source']}"
                                               + (f" with {', '.join(aliases)}" if aliases else ""),
                                       lambda art=art, target=target, aliases=aliases: art.link(target, aliases)))
        return plan

    def _registry_versions(self, coll: dict):
        # A collection not created yet: the SDK cannot parse its listing, so ask for it first.
        if self.online.lookup(f"{REGISTRY}/{coll['name']}:latest") is None:
            return []
        try:
            return self.online.api.artifacts(coll["type"], f"{REGISTRY}/{coll['name']}")
        except wandb.errors.CommError as err:
            raise UserError(f"W&B could not list {REGISTRY}/{coll['name']} ({err}).") from err


def describe(art, text: str) -> None:
    art.description = text
    art.save()


def offline_plan(store: Store, project: str, wandb_dir: Path) -> Plan:
    """What push would do at most, from the store alone (`--dry-run` without a login): every
    recorded use and every registry link with its aliases. What W&B already has cannot be
    known offline, so nothing is left out for that; runs without a folder under `wandb_dir`
    are listed as `unsynced` (their `wandb sync` command cannot be run from here)."""
    plan = Plan()
    runs = set()
    for coll in store.collections(project):
        for version in coll["versions"]:
            runs.add((version.get("logged_by") or {}).get("id"))
            if version.get("description"):
                plan.steps.append(Step("describe", f"{coll['name']}:v{version['version']}: its description "
                                                   "(the model card)", lambda: None))
            for user in version["used_by"]:
                runs.add(user["id"])
                plan.steps.append(Step("use", f"run {user['id']} ({user.get('job_type')}) used "
                                              f"{coll['name']}:v{version['version']}", lambda: None))
    for coll in store.collections(REGISTRY):
        for version in coll["versions"]:
            aliases = sorted(a for a, v in coll["aliases"].items() if v == version["version"] and a != LATEST)
            plan.steps.append(Step("link", f"{REGISTRY}/{coll['name']}: link {version['source']}"
                                           + (f" with {', '.join(aliases)}" if aliases else ""), lambda: None))
    for run_id in sorted(r for r in runs if r):
        if not list(wandb_dir.glob(f"offline-run-*-{run_id}")):
            plan.unsynced[run_id] = f"no folder offline-run-*-{run_id} under {wandb_dir}"
    return plan


def push(online: OnlineBackend, store: Store, wandb_dir: Path, dry_run: bool) -> Plan:
    """Plan, then (unless dry_run) apply each step in order; a failure says how far it got."""
    plan = Pusher(online, store, wandb_dir).plan()
    if dry_run:
        return plan
    for done, step in enumerate(plan.steps):
        try:
            step.apply()
        except (wandb.errors.CommError, ValueError) as err:
            raise UserError(f"push stopped at step {done + 1} of {len(plan.steps)} ({step.text}): {err}. "
                            "What was done stays; run push again to complete it.") from err
        print(f"  done: {step.text}")
    return plan
