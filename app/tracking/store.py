"""The embedded artifact store: W&B's artifact and registry semantics on a local folder.

Layout under the store root:

    objects/<digest>/...          the files of one artifact version, named by W&B's digest
    collections/<scope>/<name>.json   a collection: its versions (vN), aliases and lineage
    sweeps/<id>.json              local sweep state (see sweep_controller.py)
    tmp/<pid>-<random>/           staging for a version being written
    .lock                         one writer at a time (flock; released if the writer dies)
    runs/<run id>.lock            held by the one process training that run (hold_run)

Promises, the same as W&B's:
- a version appears whole or not at all: files are staged, checked and renamed into
  objects/ before the collection index (one atomic os.replace) lists them;
- identical content gets the same version (digest dedup) and `latest` moves to it;
- an alias names one version of a collection; setting it elsewhere takes it off the old one;
- files are verified against their digests on use; a mismatch names the file.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from app.cli import command
from app.errors import AliasMoved, UserError, summary
from app.names import LATEST, REGISTRY
from app.processes import pid_alive
from app.tracking.refs import NAME, Ref
from app.tracking.sdk_internals import file_digest

RESERVED_ALIAS_PREFIX = "v"  # vN names a version, never an alias
COLLECTION_KEYS = {"name": str, "scope": str, "type": str, "versions": list, "aliases": dict}


class CorruptArtifact(UserError):
    """A stored file no longer matches the digest recorded when it was logged."""


class ReadOnlyStore(UserError):
    """The store's folder cannot be written (a read-only mount, another user's folder)."""


def read_index(path: Path, what: str, expected_keys: dict[str, type]) -> dict | None:
    """A JSON index of the store (a collection, a sweep), or None when there is none. One cut
    short or edited by hand is refused with the fix, never a traceback."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = summary(err)
    else:
        if isinstance(data, dict) and all(isinstance(data.get(k), t) for k, t in expected_keys.items()):
            return data
        problem = f"not a {what} index: it needs {', '.join(expected_keys)}"
    raise UserError(
        f"the {what} index {path} is damaged ({problem}); it was cut short or edited by hand. Restore it from "
        f"a backup, or move it away to drop that {what} (files under objects/ stay), then run again."
    )


def safe_relpath(name: str) -> str:
    """A file name inside an artifact: relative, no `..`, so it cannot leave the store."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or name.startswith("\\"):
        raise UserError(f"artifact file name {name!r} must be a relative path without '..'.")
    return str(path)


def check_alias(alias: str) -> None:
    if not NAME.fullmatch(alias):
        raise UserError(f"{alias!r} cannot be an alias: use letters, digits, '-', '_' and '.', starting with a "
                        "letter or digit (e.g. production), so that a ref can name it.")
    if alias == LATEST:
        raise UserError(f"'{LATEST}' moves by itself to the newest version; it cannot be set by hand.")
    if alias[:1] == RESERVED_ALIAS_PREFIX and alias[1:].isdigit():
        raise UserError(f"{alias!r} looks like a version number and cannot be an alias.")


def check_guard(coll: dict, guard: dict[str, int | None] | None) -> None:
    """Compare-and-set for aliases: each alias in `guard` must still point at the version it
    did when the caller decided (None: at none). Called under the lock, before any write."""
    for alias, expected in (guard or {}).items():
        current = coll["aliases"].get(alias)
        if current != expected:
            where = f"v{current}" if current is not None else "no version"
            raise AliasMoved(
                f"'{alias}' of {coll['name']} moved to {where} while this step ran (another promotion?); "
                "nothing was changed. Run the step again to decide against the new state."
            )


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write a whole index or nothing; a failure (full disk, read-only folder) is a UserError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(
            f"could not write {path} ({err.strerror or err}); the store is unchanged. Free space, or point "
            "PIPELINE_STORE_DIR at a writable folder, and run again."
        ) from err


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.collections_dir = self.root / "collections"
        self.sweeps_dir = self.root / "sweeps"
        self.tmp = self.root / "tmp"

    # -- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self):
        """Exclusive lock over every write; the kernel drops it if the holder is killed."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / ".lock", "a+")
        except OSError as err:  # a read-only mount, a folder of another user
            raise ReadOnlyStore(
                f"the artifact store {self.root} cannot be written ({err.strerror or summary(err)}); nothing was "
                "changed. Point PIPELINE_STORE_DIR at a writable folder (a copy of this one keeps its history), "
                "or make it writable, and run again."
            ) from err
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check_writable(self) -> None:
        """Refuse now, before a run starts, where a later write would be refused (ReadOnlyStore)."""
        with self.locked():
            pass

    @contextlib.contextmanager
    def hold_run(self, run_id: str):
        """This process trains run `run_id` while inside: a second process that would train the
        same run (two `train.py --resume RUN` at once) is refused, naming the holder. flock, so
        the kernel frees it when the holder dies, however it dies; the file is removed when the
        holder leaves (a killed holder's stays, free, and is taken over by the next)."""
        path = self.root / "runs" / f"{run_id}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                try:
                    holder = json.loads(handle.read())
                except ValueError:  # the holder has the lock but has not written itself yet
                    holder = {}
                handle.close()
                pid = holder.get("pid", "PID")
                raise UserError(
                    f"run {run_id} is being trained by process {pid} on {holder.get('host', 'this machine')} "
                    f"(since {holder.get('since', 'just now')}); one run is trained by one process at a time, or "
                    "its epochs and checkpoints would interleave. Wait for that process to end, or stop it "
                    f"(kill {pid}) and resume then."
                ) from None
            # Locked; but if the last holder removed the file after this process opened it, the lock
            # is on a file no one else will open: open the one at the path again.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                    break
            handle.close()
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "since": now_iso()}))
            handle.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # while still locked: nobody can hold the file being removed
            handle.close()

    # -- collections ---------------------------------------------------------------------

    def _collection_path(self, scope: str, name: str) -> Path:
        return self.collections_dir / scope / f"{name}.json"

    def read_collection(self, scope: str, name: str) -> dict | None:
        return read_index(self._collection_path(scope, name), "collection", COLLECTION_KEYS)

    def collections(self, scope: str | None = None) -> list[dict]:
        """Every collection (optionally of one scope), sorted by scope and name."""
        if not self.collections_dir.exists():
            return []
        scopes = [scope] if scope else sorted(p.name for p in self.collections_dir.iterdir())
        found = []
        for s in scopes:
            for path in sorted((self.collections_dir / s).glob("*.json")):
                found.append(read_index(path, "collection", COLLECTION_KEYS))
        return found

    # -- resolving refs ------------------------------------------------------------------

    def resolve(self, ref: Ref, default_project: str, written: str | None = None) -> tuple[dict, dict]:
        """(collection, version) for a ref, or a UserError that lists what exists and names the
        ref as the user wrote it (`written`)."""
        scope = ref.scope or default_project
        shown = written or str(ref)
        coll = self.read_collection(scope, ref.name)
        prefix = f"{REGISTRY}/" if ref.registry else ""
        if coll is None:
            existing = [f"{prefix}{c['name']} ({c['type']})" for c in self.collections(scope)]
            where = "the model registry" if ref.registry else f"project {scope!r}"
            raise UserError(
                f"{shown}: no collection {prefix}{ref.name} in {where}. Existing: {', '.join(existing) or 'none'}. "
                + (
                    f"Link a model with `{command('registry')} link REF COLLECTION --alias A`."
                    if ref.registry
                    else "Run the step that produces it first (data_prep.py, then train.py)."
                )
            )
        index = ref.version if ref.version is not None else coll["aliases"].get(ref.alias)
        if index is not None and index < len(coll["versions"]) and coll["versions"][index].get("deleted"):
            raise UserError(f"{shown} was deleted on {coll['versions'][index]['deleted']} (only the newest "
                            f"checkpoints are kept); use {prefix}{ref.name}:latest.")
        if index is None or index >= len(coll["versions"]):
            count = len(coll["versions"])
            versions = "version v0" if count == 1 else f"versions v0..v{count - 1}"
            aliases = ", ".join(f"{a} -> v{v}" for a, v in sorted(coll["aliases"].items()))
            raise UserError(f"{shown} does not exist: {prefix}{ref.name} has {versions} and aliases {aliases or 'none'}.")
        return coll, coll["versions"][index]

    def qualified(self, coll: dict, version: dict) -> str:
        if coll["scope"] == REGISTRY:
            return f"{REGISTRY}/{coll['name']}:v{version['version']}"
        return f"{coll['name']}:v{version['version']}"

    # -- reading -------------------------------------------------------------------------

    def verified_files(self, version: dict) -> Path:
        """The folder holding a version's files, after checking every file's digest."""
        folder = self.objects / version["digest"]
        for name, digest in sorted(version["manifest"].items()):
            path = folder / safe_relpath(name)
            if not path.is_file():
                raise CorruptArtifact(
                    f"file {name!r} of artifact version {version['digest']} is missing from "
                    f"{folder}. The store was changed outside this tool; log the artifact again."
                )
            if file_digest(path) != digest:
                raise CorruptArtifact(
                    f"file {name!r} in {folder} does not match its recorded digest: it was "
                    "changed or corrupted after logging. Log the artifact again to repair it."
                )
        return folder

    # -- writing -------------------------------------------------------------------------

    def _clean_stale_staging(self) -> None:
        """Remove staging folders left by writers that died (called under the lock)."""
        if not self.tmp.exists():
            return
        for entry in self.tmp.iterdir():
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)

    def _store_object(self, digest: str, files: dict[str, Path], manifest: dict[str, str]) -> None:
        """Copy files into objects/<digest>, whole or not at all."""
        target = self.objects / digest
        if target.exists():
            try:
                self.verified_files({"digest": digest, "manifest": manifest})
                return
            except CorruptArtifact:
                shutil.rmtree(target)  # repair: replace the damaged copy with this good one
        stage = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"
        try:
            for name, src in files.items():
                dst = stage / safe_relpath(name)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                with open(dst, "rb") as f:
                    os.fsync(f.fileno())
            # The source could have changed between digesting and copying: check the copy.
            for name, digest_b64 in manifest.items():
                if file_digest(stage / name) != digest_b64:
                    raise CorruptArtifact(f"file {name!r} changed while it was being logged.")
            self.objects.mkdir(parents=True, exist_ok=True)
            os.rename(stage, target)
        except OSError as err:  # a full disk, a read-only folder: nothing is listed, say so
            raise UserError(
                f"could not write the artifact's files into {self.root} ({err.strerror or err}); nothing was "
                "logged. Free space, or point PIPELINE_STORE_DIR at another folder, and run again."
            ) from err
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def add_version(
        self,
        *,
        scope: str,
        name: str,
        type: str,
        digest: str,
        files: dict[str, Path],
        manifest: dict[str, str],
        metadata: dict,
        aliases: list[str],
        logged_by: dict,
        source: str | None = None,
        guard: dict[str, int | None] | None = None,
        references: dict[str, dict] | None = None,
        description: str | None = None,
    ) -> tuple[dict, dict]:
        """Add a version (or find the one with the same digest); returns (collection, version).
        `guard`: aliases that must still point where the caller saw them (check_guard).
        `references`: {name: {"uri", "digest"}} of files the version points at instead of holding
        (W&B's reference entries), recorded as W&B records them; their reader checks them."""
        for alias in aliases:
            check_alias(alias)
        for rel in files:
            safe_relpath(rel)
        with self.locked():
            self._clean_stale_staging()
            coll = self.read_collection(scope, name) or {
                "name": name, "scope": scope, "type": type, "versions": [], "aliases": {},
            }
            if coll["type"] != type:
                raise UserError(
                    f"{name!r} is an artifact of type {coll['type']!r}, not {type!r}; pick another name."
                )
            check_guard(coll, guard)
            existing = next((v for v in coll["versions"] if v["digest"] == digest and not v.get("deleted")), None)
            if files:
                self._store_object(digest, files, manifest)
            if existing is None:
                existing = {
                    "version": len(coll["versions"]),
                    "digest": digest,
                    "manifest": manifest,
                    "metadata": metadata,
                    "created_at": now_iso(),
                    "logged_by": logged_by,
                    "used_by": [],
                    "source": source,
                }
                if references:
                    existing["references"] = references
                if description is not None:  # the same files again keep the description they have
                    existing["description"] = description
                coll["versions"].append(existing)
            for alias in [LATEST, *aliases]:
                coll["aliases"][alias] = existing["version"]
            write_json_atomic(self._collection_path(scope, name), coll)
            return coll, existing

    def delete_versions(self, scope: str, name: str, numbers: list[int]) -> list[int]:
        """Delete these versions of a collection (registry.py prune: versions it chose)."""
        with self.locked():
            coll = self.read_collection(scope, name)
            doomed = [v for v in coll["versions"] if v["version"] in numbers and not v.get("deleted")]
            return self._delete(scope, coll, doomed)

    def _delete(self, scope: str, coll: dict, doomed: list[dict]) -> list[int]:
        """Under the lock. A deleted version keeps its number (W&B does not reuse them either) and
        its entry, marked `deleted`; an alias on it goes with it; its files go unless another live
        version anywhere has the same digest."""
        numbers = {v["version"] for v in doomed}
        for version in doomed:
            version["deleted"] = now_iso()
        coll["aliases"] = {a: v for a, v in coll["aliases"].items() if v not in numbers}
        write_json_atomic(self._collection_path(scope, coll["name"]), coll)
        in_use = {v["digest"] for c in self.collections() for v in c["versions"] if not v.get("deleted")}
        for version in doomed:
            if version["digest"] not in in_use:
                shutil.rmtree(self.objects / version["digest"], ignore_errors=True)
        return sorted(numbers)

    def size(self) -> int:
        """Bytes of every file under the store."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0

    def record_use(self, scope: str, name: str, version: int, run: dict) -> None:
        """Lineage: note that `run` consumed this version."""
        with self.locked():
            coll = self.read_collection(scope, name)
            entry = coll["versions"][version]
            if all(u.get("id") != run.get("id") for u in entry["used_by"]):
                entry["used_by"].append(run)
                write_json_atomic(self._collection_path(scope, name), coll)

    def remove_alias(self, scope: str, name: str, version: int, alias: str) -> bool:
        """Take `alias` off a version, if it is there; True when it was."""
        with self.locked():
            coll = self.read_collection(scope, name)
            if coll["aliases"].get(alias) != version:
                return False
            del coll["aliases"][alias]
            write_json_atomic(self._collection_path(scope, name), coll)
            return True

    def set_description(self, scope: str, name: str, version: int, description: str) -> None:
        """Replace a version's description (W&B's Artifact.description)."""
        with self.locked():
            coll = self.read_collection(scope, name)
            coll["versions"][version]["description"] = description
            write_json_atomic(self._collection_path(scope, name), coll)

    def set_alias(self, scope: str, name: str, version: int, alias: str,
                  guard: dict[str, int | None] | None = None) -> int | None:
        """Point `alias` at a version; returns the version it was taken from, if any."""
        check_alias(alias)
        with self.locked():
            coll = self.read_collection(scope, name)
            check_guard(coll, guard)
            previous = coll["aliases"].get(alias)
            coll["aliases"][alias] = version
            write_json_atomic(self._collection_path(scope, name), coll)
            return previous
