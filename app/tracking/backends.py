"""The two backends behind the hand-off layer, with one interface.

OnlineBackend calls W&B's server. OfflineBackend keeps artifacts, aliases, lineage and the
registry in the embedded Store, while the W&B run itself (metrics, media, tables, and the
output artifacts, for a later `wandb sync`) is still written by the real SDK in offline mode.
"""
from __future__ import annotations

import contextlib
import datetime
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import wandb

from app.cli import command
from app.errors import UserError
from app.names import CHECKPOINT_TYPE, DATASET_TYPE, EVALUATION_TYPE, LATEST, MODEL_TYPE, ONNX_TYPE, REGISTRY
from app.tracking.settings import Settings
from app.tracking.refs import Ref, parse_ref
from app.tracking.sdk_internals import file_digest, manifest_digests, reference_digests
from app.tracking.store import ReadOnlyStore, Store, check_alias, check_guard


@dataclass
class ArtifactVersion:
    """One resolved artifact version: where its (verified) files are and what it says."""

    ref: str  # qualified, with the version: "digits-split:v0"
    name: str
    version: int
    type: str
    digest: str
    metadata: dict
    aliases: list[str] = field(default_factory=list)
    path: Path | None = None  # local folder with the files, once fetched
    logged_by: dict | None = None
    used_by: list[dict] = field(default_factory=list)
    source: str | None = None  # for a registry entry: the artifact version it links to
    collection: str = ""
    created_at: str | None = None
    description: str | None = None  # W&B's Markdown description (a model's card); a registry entry's is its source's

    def as_json(self) -> dict:
        return {
            "collection": self.collection or self.name,
            "ref": self.ref,
            "version": f"v{self.version}",
            "type": self.type,
            "aliases": self.aliases,
            "digest": self.digest,
            "metadata": self.metadata,
            "logged_by": self.logged_by,
            "used_by": self.used_by,
            "source": self.source,
        }


# How long W&B keeps a checkpoint version that its run did not delete (a run killed and never
# resumed): long enough to resume after a weekend or a preempted week, not forever.
CHECKPOINT_TTL = datetime.timedelta(days=14)


def build_wandb_artifact(name: str, type: str, files: dict[str, Path], metadata: dict,
                         references: dict[str, str] | None = None, description: str | None = None,
                         uploaded: bool = True) -> wandb.Artifact:
    """W&B's own manifest gives the digest, so a version's identity is the same on both backends.
    `references`: {name: URI} of files left where they are, each with its checksum (W&B computes
    the MD5 of a file:// reference), so a changed file makes another digest. `uploaded`: whether it
    will be logged to a W&B run. When it will, W&B stages a copy of each file (add_file's default
    policy, "mutable": the upload, or a later `wandb sync`, reads that copy, and deletes it once
    uploaded); when not (an offline checkpoint), its files are only hashed ("immutable": no copy),
    as a staged copy would never be uploaded nor deleted (W&B's data folder, ~/.local/share/wandb:
    every epoch's checkpoint of every offline run, 72 GB on this VM in two days)."""
    art = wandb.Artifact(name, type=type, metadata=metadata, description=description)
    if type == CHECKPOINT_TYPE:  # online, W&B deletes a checkpoint no finished run deleted (a killed one's)
        art.ttl = CHECKPOINT_TTL
    for rel, path in files.items():
        art.add_file(str(path), name=rel, policy="mutable" if uploaded else "immutable")
    for rel, uri in sorted((references or {}).items()):
        art.add_reference(uri, name=rel, checksum=True)
    return art


def download(art, root: Path, metadata: dict) -> None:
    """A used version's files into `root`, verified. A version of references (data_prep --reference)
    downloads only its own files (metadata's references.files), each checked against its manifest
    digest (Artifact.verify would fetch every reference too): its images stay where they are, and
    app/data/references.py checks them against their checksums."""
    if "references" not in metadata:
        art.download(root=str(root))
        art.verify(root=str(root))
        return
    for name in metadata["references"]["files"]:
        entry = art.get_entry(name)
        if file_digest(Path(entry.download(root=str(root)))) != entry.digest:
            raise UserError(f"{name} of {art.name} does not match its checksum after download (a damaged transfer "
                            "or cache); run again, or clear W&B's artifact cache (WANDB_CACHE_DIR).")


def _check_type(found: ArtifactVersion, expected: str | None) -> None:
    if expected and found.type != expected:
        raise UserError(
            f"{found.ref} is a {found.type!r} artifact, but a {expected!r} artifact is needed here. "
            f"List what exists with `{command('registry')} list`."
        )


class Backend(Protocol):
    """What the hand-off layer asks of a backend, online (W&B's server) or offline (the embedded
    store). Both implement exactly these; tests/test_store.py checks their signatures against it."""

    settings: Settings

    def peek(self, ref: str, expected_type: str | None = None) -> ArtifactVersion:
        """A version's metadata, no files fetched, no use recorded; a missing ref is a UserError."""

    def fetch(self, ref: str, expected_type: str | None) -> ArtifactVersion:
        """A version with its verified files, outside any run."""

    def lookup(self, ref: str) -> ArtifactVersion | None:
        """As peek, None where nothing is found."""

    def check_writable(self) -> None:
        """A UserError now when nothing could be logged (a read-only store)."""

    def hold_run(self, run_id: str, resuming: bool):
        """A context manager holding a training run for this process alone."""

    def use(self, run, ref: str, expected_type: str | None, lineage_optional: bool = False) -> ArtifactVersion:
        """A version's verified files, its use recorded as the run's input."""

    def log(self, run, name: str, type: str, files: dict[str, Path], metadata: dict, aliases: list[str],
            references: dict[str, str] | None = None, description: str | None = None) -> ArtifactVersion:
        """A new version (or the one with the same digest) as the run's output."""

    def describe(self, ref: str, description: str) -> None:
        """The version's description replaced (a registry entry's: its source's, as in W&B)."""

    def delete(self, versions: list[ArtifactVersion], with_aliases: bool = False) -> None:
        """These versions deleted (`with_aliases`: an alias on one, `latest` too, goes with it)."""

    def size(self) -> int | None:
        """Bytes the store holds (None online)."""

    def link(self, ref: str, collection: str, aliases: list[str], run=None,
             guard: dict[str, int | None] | None = None) -> ArtifactVersion:
        """The version linked into a registry collection with `aliases`."""

    def set_alias(self, ref: str, alias: str,
                  guard: dict[str, int | None] | None = None) -> tuple[ArtifactVersion, str | None]:
        """`alias` moved onto the version; returns it and the version that held the alias before."""

    def remove_alias(self, ref: str, alias: str) -> bool:
        """`alias` taken off the version (True when it was there)."""

    def find(self, type: str, alias: str, registry: bool) -> list[ArtifactVersion]:
        """The version holding `alias` in each collection of `type`, newest first."""

    def list(self, collection: str | None = None, lineage: bool = True) -> list[ArtifactVersion]:
        """Every version (of one collection), for `registry.py list`; `lineage` False: without who
        logged and used each (online two requests a version fewer)."""


class OfflineBackend:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = Store(settings.store_dir)

    def _info(self, coll: dict, version: dict) -> ArtifactVersion:
        aliases = sorted(a for a, v in coll["aliases"].items() if v == version["version"])
        return ArtifactVersion(
            ref=self.store.qualified(coll, version),
            name=coll["name"],
            collection=(f"{REGISTRY}/" if coll["scope"] == REGISTRY else "") + coll["name"],
            version=version["version"],
            type=coll["type"],
            digest=version["digest"],
            metadata=version["metadata"],
            aliases=aliases,
            logged_by=version["logged_by"],
            used_by=version["used_by"],
            source=version.get("source"),
            created_at=version.get("created_at"),
            description=self._description(version),
        )

    def _description(self, version: dict) -> str | None:
        """A version's description; a registry entry has its source's (W&B keeps one per artifact)."""
        if not version.get("source"):
            return version.get("description")
        try:
            return self._resolve(version["source"])[1].get("description")
        except UserError:  # the source was deleted: the entry has none
            return None

    def _resolve(self, ref: str | Ref) -> tuple[dict, dict]:
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        return self.store.resolve(parsed, self.settings.project, written=ref.strip() if isinstance(ref, str) else None)

    def peek(self, ref: str, expected_type: str | None = None) -> ArtifactVersion:
        """Metadata of a version, without fetching files or recording a use."""
        info = self._info(*self._resolve(ref))
        _check_type(info, expected_type)
        return info

    def _verified(self, ref: str, expected_type: str | None) -> tuple[dict, dict, ArtifactVersion]:
        """(collection, version, info with the verified files' folder) for a ref of the expected type."""
        coll, version = self._resolve(ref)
        info = self._info(coll, version)
        _check_type(info, expected_type)
        info.path = self.store.verified_files(version)
        return coll, version, info

    def fetch(self, ref: str, expected_type: str | None) -> ArtifactVersion:
        """A version's verified files and metadata without recording a use: for processes that
        work inside another process's run (torchrun's ranks other than 0)."""
        return self._verified(ref, expected_type)[2]

    def lookup(self, ref: str) -> ArtifactVersion | None:
        """The version a ref names, or None when there is none (the store's only refusal here)."""
        try:
            return self._info(*self._resolve(ref))
        except UserError:
            return None

    def check_writable(self) -> None:
        """A read-only store is refused before a run that writes to it starts."""
        self.store.check_writable()

    def hold_run(self, run_id: str, resuming: bool):
        """A context in which this process alone trains run `run_id` (Store.hold_run), a new run
        or a resumed one."""
        return self.store.hold_run(run_id)

    def use(self, run, ref: str, expected_type: str | None, lineage_optional: bool = False) -> ArtifactVersion:
        """`lineage_optional`: a store that cannot be written still serves its verified files
        (predict.py on a read-only store); the use is then not recorded, and a warning says so."""
        coll, version, info = self._verified(ref, expected_type)
        try:
            self.store.record_use(coll["scope"], coll["name"], version["version"], run.lineage_entry())
            if version.get("source"):  # a registry entry: the linked artifact version was used too
                src_coll, src_version = self._resolve(version["source"])
                self.store.record_use(src_coll["scope"], src_coll["name"], src_version["version"], run.lineage_entry())
        except ReadOnlyStore:
            if not lineage_optional:
                raise
            print(f"warning: the artifact store {self.store.root} is read-only, so this use of {info.ref} is not "
                  "recorded in its lineage.", file=sys.stderr)
        return info

    def log(self, run, name: str, type: str, files: dict[str, Path], metadata: dict, aliases: list[str],
            references: dict[str, str] | None = None, description: str | None = None) -> ArtifactVersion:
        logged = type != CHECKPOINT_TYPE  # into the offline W&B run too (below)
        art = build_wandb_artifact(name, type, files, metadata, references, description, uploaded=logged)
        manifest = manifest_digests(art, files)
        coll, version = self.store.add_version(
            scope=self.settings.project, name=name, type=type, digest=art.digest, files=files,
            manifest=manifest, metadata=metadata, aliases=aliases, logged_by=run.lineage_entry(),
            references=reference_digests(art, references or {}), description=description,
        )
        # Also into the offline W&B run, so `wandb sync` later uploads the same version. Not a
        # checkpoint: an offline run folder cannot delete what it logged, so retention (prune)
        # would not hold there; checkpoints are for resuming on this machine, from the store.
        if logged:
            run.wandb_run.log_artifact(art, aliases=[LATEST, *aliases])
        return self._info(coll, version)

    def delete(self, versions: list[ArtifactVersion], with_aliases: bool = False) -> None:
        """Delete these project versions (registry.py prune's plan, a run's old checkpoints); the
        store takes a deleted version's aliases off with it."""
        for version in versions:
            self.store.delete_versions(self.settings.project, version.name, [version.version])

    def size(self) -> int | None:
        """Bytes the store takes on disk."""
        return self.store.size()

    def link(self, ref: str, collection: str, aliases: list[str], run=None,
             guard: dict[str, int | None] | None = None) -> ArtifactVersion:
        src_coll, src_version = self._resolve(ref)
        if src_coll["scope"] == REGISTRY:
            src_coll, src_version = self._resolve(src_version["source"])
        # The source keeps its project when it is not this one, so it resolves from any project.
        project = "" if src_coll["scope"] == self.settings.project else f"{src_coll['scope']}/"
        source = f"{project}{src_coll['name']}:v{src_version['version']}"
        self.store.verified_files(src_version)  # never link a damaged version
        coll, version = self.store.add_version(
            scope=REGISTRY, name=collection, type=src_coll["type"], digest=src_version["digest"],
            files={}, manifest=src_version["manifest"], metadata=src_version["metadata"],
            aliases=aliases, logged_by=run.lineage_entry() if run else {"id": None, "job_type": "registry"},
            source=source, guard=guard,
        )
        return self._info(coll, version)

    def set_alias(self, ref: str, alias: str,
                  guard: dict[str, int | None] | None = None) -> tuple[ArtifactVersion, str | None]:
        coll, version = self._resolve(ref)
        previous = self.store.set_alias(coll["scope"], coll["name"], version["version"], alias, guard)
        coll, version = self._resolve(ref)
        return self._info(coll, version), (f"v{previous}" if previous is not None else None)

    def remove_alias(self, ref: str, alias: str) -> bool:
        """Take `alias` off the version `ref` names (True when it was there)."""
        coll, version = self._resolve(ref)
        return self.store.remove_alias(coll["scope"], coll["name"], version["version"], alias)

    def describe(self, ref: str, description: str) -> None:
        coll, version = self._resolve(ref)
        if version.get("source"):  # a registry entry: W&B describes the artifact it links to
            coll, version = self._resolve(version["source"])
        self.store.set_description(coll["scope"], coll["name"], version["version"], description)

    def find(self, type: str, alias: str, registry: bool) -> list[ArtifactVersion]:
        """The version carrying `alias` in each collection of `type`, in the model registry or in
        this project; newest first."""
        scope = REGISTRY if registry else self.settings.project
        found = [self._info(c, c["versions"][c["aliases"][alias]]) for c in self.store.collections(scope)
                 if c["type"] == type and alias in c["aliases"]]
        return sorted(found, key=lambda v: v.created_at or "", reverse=True)

    def list(self, collection: str | None = None, lineage: bool = True) -> list[ArtifactVersion]:
        rows = []
        for coll in self.store.collections():
            full = (f"{REGISTRY}/" if coll["scope"] == REGISTRY else "") + coll["name"]
            if coll["scope"] not in (REGISTRY, self.settings.project):
                continue
            if collection and collection not in (full, coll["name"]):
                continue
            rows.extend(self._info(coll, v) for v in coll["versions"] if not v.get("deleted"))
        if collection and not rows:
            existing = sorted({r.collection for r in self.list()})
            raise UserError(f"no collection {collection!r}. Existing: {', '.join(existing) or 'none'}.")
        return rows


def is_not_found(err: Exception) -> bool:
    """A definite "no such artifact, alias or project" from W&B, as opposed to a network, auth,
    permission, organization or server failure. The public API raises CommError for all of them;
    for a missing one, the SDK's lookup itself raised ValueError("... not found ...") inside it.
    tests/test_online_contract.py pins this against the installed SDK."""
    cause = getattr(err, "exc", None)
    return isinstance(cause, ValueError) and " not found" in str(cause)


def _failure(what: str, err: Exception) -> UserError:
    return UserError(
        f"W&B could not answer for {what}: {err}. This is not a 'not found': check the network and your "
        "credentials (`wandb login`, or WANDB_API_KEY in app/.env), or run offline with WANDB_MODE=offline."
    )


class OnlineBackend:
    """The real W&B. Needs network and an API key; the server enforces the same rules."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._api = None

    @property
    def api(self):
        if self._api is None:
            try:
                self._api = wandb.Api(overrides={"project": self.settings.project, "entity": self.settings.entity},
                                      timeout=30)
            except wandb.errors.AuthenticationError as err:
                raise UserError(f"W&B refused the API key ({err}). Run `wandb login` again, fix WANDB_API_KEY in "
                                "app/.env, or run offline with WANDB_MODE=offline.") from err
            except wandb.errors.CommError as err:
                raise _failure(self.settings.base_url, err) from err
        return self._api

    def _full(self, ref: str) -> str:
        parsed = parse_ref(ref)
        if parsed.registry:
            return str(parsed)  # the org prefix, when given, stays
        project = parsed.project or self.settings.project
        entity = parsed.entity or self.settings.entity
        return "/".join(p for p in (entity, project) if p) + f"/{parsed.name}:{parsed.alias}"

    def _info(self, art, path: Path | None = None, lineage: bool = False, org: str | None = None) -> ArtifactVersion:
        """A version as this project names it. Fetched through a registry ref, the SDK's name and
        version are the registry collection's (`digits-convnet:v0` may link project `digits-convnet:v3`),
        so such a version keeps its registry ref, and `source` names the version it links to."""
        collection, _, suffix = art.name.partition(":")
        registry = art.project.startswith("wandb-registry-")
        # The version in the collection it was fetched through: a registry listing names it in
        # `name` (its `version` is then the source's); a fetch by alias has it in `version`.
        version = suffix if suffix[1:].isdigit() and suffix[:1] == "v" else art.version
        if registry:
            ref = f"{org + '/' if org else ''}{REGISTRY}/{collection}:{version}"
            source = f"{art.source_entity}/{art.source_project}/{art.source_name.split(':')[0]}:{art.source_version}"
        else:
            ref = f"{collection}:{version}" if art.project == self.settings.project else \
                f"{art.project}/{collection}:{version}"
            source = None
        logger = art.logged_by() if lineage else None
        return ArtifactVersion(
            ref=ref,
            name=collection,
            collection=(f"{REGISTRY}/" if registry else "") + collection,
            version=int(version.lstrip("v")),
            type=art.type,
            digest=art.digest,
            metadata=dict(art.metadata),
            aliases=list(art.aliases),
            path=path,
            logged_by={"id": logger.id} if logger else None,
            used_by=[{"id": r.id, "job_type": r.job_type} for r in art.used_by()] if lineage else [],
            source=source,
            created_at=art.created_at,
            description=art.description,
        )

    def _fetch(self, ref: str):
        """The version a ref names; a clear "not found" only when W&B said so."""
        try:
            return self.api.artifact(self._full(ref))
        except wandb.errors.CommError as err:
            if is_not_found(err):
                raise UserError(f"{ref} was not found in W&B ({err}). Check the name and alias in the W&B UI, "
                                f"or list them with `{command('registry')} list COLLECTION`.") from err
            raise _failure(ref, err) from err

    def _lookup(self, ref: str):
        """The version a ref names, or None when W&B says there is none (and every other failure raised)."""
        try:
            return self.api.artifact(self._full(ref))
        except wandb.errors.CommError as err:
            if is_not_found(err):
                return None
            raise _failure(ref, err) from err

    def lookup(self, ref: str) -> ArtifactVersion | None:
        """As OfflineBackend.lookup: None only for a definite not-found."""
        art = self._lookup(ref)
        return self._info(art, org=parse_ref(ref).org) if art is not None else None

    def peek(self, ref: str, expected_type: str | None = None) -> ArtifactVersion:
        info = self._info(self._fetch(ref), org=parse_ref(ref).org)
        _check_type(info, expected_type)
        return info

    def check_writable(self) -> None:
        """W&B's server decides what may be written; the key was checked on connecting."""

    def hold_run(self, run_id: str, resuming: bool):
        """Refuse to resume run `run_id` while W&B says it is running: its state is `running` only
        while its process sends heartbeats (a killed one turns `crashed` after a few minutes).
        A new run needs no check: W&B's state of it is this process's own."""
        if not resuming:
            return contextlib.nullcontext()
        path = "/".join(p for p in (self.settings.entity, self.settings.project) if p) + f"/{run_id}"
        try:
            self.api.flush()  # the Api caches runs; their state is what changes
            found = self.api.run(path)
        except wandb.errors.CommError as err:
            # the SDK wraps its RunNotFoundError (a ValueError): W&B has no such run, so nobody trains it
            if isinstance(getattr(err, "exc", None), ValueError):
                return contextlib.nullcontext()
            raise _failure(f"run {path}", err) from err
        if found.state == "running":
            raise UserError(
                f"run {path} is running in W&B (its last heartbeat: {getattr(found, 'heartbeat_at', None) or 'recent'}"
                "); one run is trained by one process at a time. Wait for it "
                "to end, or stop it (the run's page in W&B, or kill its process); a process that died is marked "
                "crashed by W&B within minutes, and can be resumed then."
            )
        return contextlib.nullcontext()

    def use(self, run, ref: str, expected_type: str | None, lineage_optional: bool = False) -> ArtifactVersion:
        # peek first: a wrong type is refused before W&B records the use in the run's lineage
        self.peek(ref, expected_type)
        try:
            art = run.wandb_run.use_artifact(self._full(ref), type=expected_type)
        except wandb.errors.CommError as err:
            raise _failure(ref, err) from err
        # A folder of this run, removed when the run ends; W&B's own cache makes a repeat cheap.
        root = run.scratch_dir / f"{art.name.replace(':', '-')}"
        download(art, root, dict(art.metadata))
        return self._info(art, root, org=parse_ref(ref).org)

    def fetch(self, ref: str, expected_type: str | None) -> ArtifactVersion:
        """As OfflineBackend.fetch: downloaded and verified into a folder removed at exit."""
        import atexit
        import shutil
        import tempfile

        art = self._fetch(ref)
        info = self._info(art, org=parse_ref(ref).org)
        _check_type(info, expected_type)
        root = Path(tempfile.mkdtemp(prefix="pipeline-inputs-"))
        atexit.register(shutil.rmtree, root, True)
        download(art, root, info.metadata)
        info.path = root
        return info

    def log(self, run, name: str, type: str, files: dict[str, Path], metadata: dict, aliases: list[str],
            references: dict[str, str] | None = None, description: str | None = None) -> ArtifactVersion:
        art = build_wandb_artifact(name, type, files, metadata, references, description)
        run.wandb_run.log_artifact(art, aliases=[LATEST, *aliases])
        art.wait()
        return ArtifactVersion(
            ref=f"{name}:{art.version}", name=name, version=int(art.version.lstrip("v")), type=type,
            digest=art.digest, metadata=metadata, aliases=[LATEST, *aliases],
        )

    def _delete(self, art, with_aliases: bool = False) -> None:
        try:
            art.delete(delete_aliases=with_aliases)
        except wandb.errors.CommError as err:
            raise _failure(f"deleting {art.name}", err) from err

    def delete(self, versions: list[ArtifactVersion], with_aliases: bool = False) -> None:
        """Artifact.delete() on each (public API; `delete_aliases` with `with_aliases`)."""
        for version in versions:
            self._delete(self._fetch(version.ref), with_aliases)

    def size(self) -> int | None:
        """W&B keeps the files: no local store to measure."""
        return None

    def _holders(self, collection_path: str, aliases) -> dict[str, int]:
        """The version number each alias is on now in the collection (aliases on none left out)."""
        current = {}
        for alias in aliases:
            found = self._lookup(f"{collection_path}:{alias}")
            if found is not None:
                current[alias] = int(found.version.lstrip("v"))
        return current

    def _check_guard(self, collection_path: str, guard: dict[str, int | None] | None,
                     current: dict[str, int] | None = None) -> None:
        """Store.check_guard against the server. W&B moves aliases without compare-and-set, so
        this re-reads right before the move: it narrows the window, it cannot close it."""
        if current is None:
            current = self._holders(collection_path, guard or {})
        check_guard({"name": collection_path, "aliases": current}, guard)

    def link(self, ref: str, collection: str, aliases: list[str], run=None,
             guard: dict[str, int | None] | None = None) -> ArtifactVersion:
        for alias in aliases:
            check_alias(alias)
        art = self._fetch(ref)
        target = f"{REGISTRY}/{collection}"
        self._check_guard(target, guard)
        try:
            if run is not None:
                run.wandb_run.link_artifact(art, target, aliases=aliases)
            else:
                art.link(target, aliases=aliases)
        except (wandb.errors.CommError, ValueError) as err:
            raise UserError(f"W&B refused to link {ref} into {target} ({err}); nothing was linked. Check that "
                            "you may write to the model registry of your organization.") from err
        return self.peek(f"{target}:{aliases[0]}" if aliases else f"{target}:latest")

    def set_alias(self, ref: str, alias: str,
                  guard: dict[str, int | None] | None = None) -> tuple[ArtifactVersion, str | None]:
        check_alias(alias)
        art = self._fetch(ref)
        collection_ref = self._full(ref).rsplit(":", 1)[0]
        current = self._holders(collection_ref, {alias, *(guard or {})})  # one read serves both
        self._check_guard(collection_ref, guard, current)
        previous = f"v{current[alias]}" if alias in current else None
        # Its identity before save(): the server answers save() with the source artifact, whose
        # version number the SDK then takes over (a registry v0 would read as the project's v3).
        info = self._info(art, org=parse_ref(ref).org)
        if alias not in art.aliases:
            art.aliases.append(alias)
            try:
                art.save()  # the server takes the alias off the version that had it
            except wandb.errors.CommError as err:
                raise _failure(f"moving {alias!r} to {ref}", err) from err
            info.aliases.append(alias)
        return info, previous

    def remove_alias(self, ref: str, alias: str) -> bool:
        """As OfflineBackend.remove_alias: Artifact.save() with the alias gone from its aliases."""
        art = self._fetch(ref)
        if alias not in art.aliases:
            return False
        art.aliases.remove(alias)
        try:
            art.save()
        except wandb.errors.CommError as err:
            raise _failure(f"taking {alias!r} off {ref}", err) from err
        return True

    def describe(self, ref: str, description: str) -> None:
        """Artifact.description set and saved (the public API); through a registry ref W&B
        describes the artifact the entry links to, as the registry's UI shows it."""
        art = self._fetch(ref)
        art.description = description
        try:
            art.save()
        except wandb.errors.CommError as err:
            raise _failure(f"saving the description of {ref}", err) from err
        # The SDK skips all but alias changes, with only a warning, where the linked artifact's
        # own project is read-only to this key: read it back, so that is said, not lost.
        if self._fetch(ref).description != description:
            raise UserError(f"W&B did not save the description of {ref}: this API key may not write to the project "
                            "of the artifact it links to. The evaluation artifact holds the card (model_card.md).")

    def paged(self, what: str, pages) -> list:
        """Every item of one of the SDK's paginated listings. Iterating them raises the failures
        of wandb-core un-normalized (not as CommError), hence the broad catch, kept to this loop."""
        try:
            return list(pages)
        except wandb.errors.CommError as err:
            if is_not_found(err):
                return []
            raise _failure(what, err) from err
        except Exception as err:  # noqa: BLE001 - wandb-core's request failures, see above
            raise _failure(what, err) from err

    def _collection_names(self, project_path: str, type: str) -> list[str]:
        what = f"the {type} collections of {project_path}"
        return [c.name for c in self.paged(what, self.api.artifact_collections(project_path, type))]

    def find(self, type: str, alias: str, registry: bool) -> list[ArtifactVersion]:
        """As OfflineBackend.find. Registry collections are named after the project's model
        collections (`<dataset>-<arch>`), so those names are the ones looked up there."""
        project_path = "/".join(p for p in (self.settings.entity, self.settings.project) if p)
        names = self._collection_names(project_path, type)
        found = []
        for name in names:
            art = self._lookup(f"{REGISTRY}/{name}:{alias}" if registry else f"{project_path}/{name}:{alias}")
            if art is not None:
                found.append(self._info(art))
        return sorted(found, key=lambda v: v.created_at or "", reverse=True)

    def list(self, collection: str | None = None, lineage: bool = True) -> list[ArtifactVersion]:
        """Every version of the project's dataset, model, evaluation, ONNX and checkpoint
        collections and of the registry collections named after its models; or of one collection."""
        project_path = "/".join(p for p in (self.settings.entity, self.settings.project) if p)
        if collection is None:
            paths = []
            for type_name in (DATASET_TYPE, MODEL_TYPE, EVALUATION_TYPE, ONNX_TYPE, CHECKPOINT_TYPE):
                names = self._collection_names(project_path, type_name)
                paths += [(type_name, f"{project_path}/{n}") for n in names]
                if type_name == MODEL_TYPE:
                    paths += [(type_name, f"{REGISTRY}/{n}") for n in names]
        else:
            parsed = parse_ref(collection)
            path = str(parsed).rsplit(":", 1)[0] if parsed.registry else self._full(collection).rsplit(":", 1)[0]
            latest = self._fetch(f"{path}:latest")
            paths = [(latest.type, path)]
        rows = []
        for type_name, path in paths:
            try:
                versions = self.api.artifacts(type_name, path)
            except wandb.errors.CommError as err:
                if is_not_found(err):
                    continue
                raise _failure(path, err) from err
            rows += [self._info(a, lineage=lineage) for a in sorted(self.paged(path, versions),
                                                                  key=lambda a: int(a.name.rpartition(":v")[2]))]
        return rows


def make_backend(settings: Settings):
    return OfflineBackend(settings) if settings.offline else OnlineBackend(settings)
