"""The embedded backend's contract: W&B's artifact and registry rules on a local folder."""
from __future__ import annotations

import hashlib
import os
import multiprocessing
from pathlib import Path

import pytest

from app.errors import UserError
from app.tracking.settings import Settings
from app.tracking.backends import OfflineBackend
from app.tracking.store import CorruptArtifact


class FakeWandbRun:
    """Stands in for the offline W&B run; the store contract does not depend on it."""

    def __init__(self):
        self.logged = []

    def log_artifact(self, art, aliases):
        self.logged.append((art.name, art.digest, list(aliases)))


class FakeRun:
    def __init__(self, run_id="run1", job_type="test"):
        self.wandb_run = FakeWandbRun()
        self._id, self._job = run_id, job_type

    def lineage_entry(self):
        return {"id": self._id, "job_type": self._job, "name": None}


def make_backend(root: Path) -> OfflineBackend:
    return OfflineBackend(Settings(mode="offline", project="proj", entity=None, model_retrain=None,
                                   model_eval=None, store_dir=root, base_url="http://x.invalid"))


def log(backend, tmp, content: bytes, name="things", type="dataset", aliases=(), run=None):
    """Log one file with `content`; the metadata records its length."""
    src = tmp / f"src-{hashlib.md5(content).hexdigest()}" / "f.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(content)
    return backend.log(run or FakeRun(), name, type, {"f.bin": src}, {"n": len(content)}, list(aliases))


@pytest.fixture
def backend(tmp_path):
    return make_backend(tmp_path / "store")


def test_versions_are_numbered_per_collection_and_latest_moves(backend, tmp_path):
    assert log(backend, tmp_path, b"a").ref == "things:v0"
    assert log(backend, tmp_path, b"b").ref == "things:v1"
    assert log(backend, tmp_path, b"c", name="other").ref == "other:v0"
    assert backend.peek("things").ref == "things:v1"
    assert backend.peek("things:latest").version == 1
    assert backend.peek("things:v0").metadata == {"n": 1}


def test_identical_content_is_the_same_version_and_latest_moves_back(backend, tmp_path):
    first = log(backend, tmp_path, b"same")
    log(backend, tmp_path, b"different")
    again = log(backend, tmp_path, b"same")
    assert again.ref == first.ref == "things:v0"
    assert again.digest == first.digest
    assert len(backend.list("things")) == 2
    assert backend.peek("things:latest").version == 0


def test_digest_is_wandbs_own_artifact_digest(backend, tmp_path):
    import wandb

    logged = log(backend, tmp_path, b"payload")
    art = wandb.Artifact("things", type="dataset")
    art.add_file(str(next(tmp_path.glob("src-*/f.bin"))), name="f.bin")
    assert logged.digest == art.digest


def test_an_alias_is_unique_within_a_collection(backend, tmp_path):
    log(backend, tmp_path, b"a", aliases=["best"])
    log(backend, tmp_path, b"b")
    moved, previous = backend.set_alias("things:v1", "best")
    assert previous == "v0"
    assert "best" in moved.aliases
    assert "best" not in backend.peek("things:v0").aliases
    assert backend.peek("things:best").version == 1


@pytest.mark.parametrize("alias", ["latest", "v3"])
def test_reserved_aliases_are_refused(backend, tmp_path, alias):
    log(backend, tmp_path, b"a")
    with pytest.raises(UserError):
        backend.set_alias("things:v0", alias)


def test_lineage_records_who_logged_and_who_used(backend, tmp_path):
    log(backend, tmp_path, b"a", run=FakeRun("producer", "data_prep"))
    backend.use(FakeRun("consumer", "train"), "things:latest", "dataset")
    backend.use(FakeRun("consumer", "train"), "things:latest", "dataset")  # once per run
    info = backend.peek("things:v0")
    assert info.logged_by["id"] == "producer"
    assert [u["id"] for u in info.used_by] == ["consumer"]


def test_use_returns_verified_files(backend, tmp_path):
    log(backend, tmp_path, b"content")
    used = backend.use(FakeRun(), "things", "dataset")
    assert (used.path / "f.bin").read_bytes() == b"content"


def test_a_corrupted_file_is_detected_on_use_and_names_the_file(backend, tmp_path):
    log(backend, tmp_path, b"good")
    log(backend, tmp_path, b"other")
    stored = backend.use(FakeRun(), "things:v0", "dataset").path / "f.bin"
    stored.write_bytes(b"evil")
    with pytest.raises(CorruptArtifact, match="f.bin"):
        backend.use(FakeRun(), "things:v0", "dataset")
    assert (backend.use(FakeRun(), "things:v1", "dataset").path / "f.bin").read_bytes() == b"other"


def test_a_removed_file_is_detected_on_use(backend, tmp_path):
    log(backend, tmp_path, b"good")
    (backend.use(FakeRun(), "things:v0", "dataset").path / "f.bin").unlink()
    with pytest.raises(CorruptArtifact, match="missing"):
        backend.use(FakeRun(), "things:v0", "dataset")


def test_relogging_repairs_a_damaged_object(backend, tmp_path):
    log(backend, tmp_path, b"good")
    (backend.use(FakeRun(), "things:v0", "dataset").path / "f.bin").write_bytes(b"bad")
    log(backend, tmp_path, b"good")
    assert (backend.use(FakeRun(), "things:v0", "dataset").path / "f.bin").read_bytes() == b"good"


def test_registry_link_and_resolution(backend, tmp_path):
    log(backend, tmp_path, b"w1", name="digits-convnet", type="model")
    log(backend, tmp_path, b"w2", name="digits-convnet", type="model")
    linked = backend.link("digits-convnet:v1", "digits-convnet", ["candidate"])
    assert linked.ref == "wandb-registry-model/digits-convnet:v0"
    assert linked.source == "digits-convnet:v1"
    assert backend.peek("wandb-registry-model/digits-convnet:candidate").digest == backend.peek("digits-convnet:v1").digest
    # linking the same version again is the same registry version
    assert backend.link("digits-convnet:v1", "digits-convnet", ["production"]).version == 0
    # use through the registry records lineage on the source version too
    backend.use(FakeRun("evaluator", "evaluate"), "wandb-registry-model/digits-convnet:production", "model")
    assert [u["id"] for u in backend.peek("digits-convnet:v1").used_by] == ["evaluator"]


def test_unknown_refs_list_what_exists(backend, tmp_path):
    log(backend, tmp_path, b"a", aliases=["best"])
    with pytest.raises(UserError, match="Existing: things"):
        backend.peek("nothing:latest")
    with pytest.raises(UserError, match="best -> v0"):
        backend.peek("things:missing")
    with pytest.raises(UserError, match="things:v9 does not exist: things has version v0 and"):
        backend.peek("things:v9")
    log(backend, tmp_path, b"b")
    with pytest.raises(UserError, match=r"has versions v0\.\.v1"):
        backend.peek("things:v9")


def test_wrong_type_is_refused(backend, tmp_path):
    log(backend, tmp_path, b"a")
    with pytest.raises(UserError, match="'dataset' artifact"):
        backend.use(FakeRun(), "things", "model")
    with pytest.raises(UserError, match="type 'dataset'"):
        log(backend, tmp_path, b"b", type="model")


@pytest.mark.parametrize("name", ["../escape.bin", "/etc/passwd", "a/../../b"])
def test_file_names_cannot_escape_the_store(backend, tmp_path, name):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    with pytest.raises(UserError, match="relative path"):
        backend.store.add_version(scope="proj", name="things", type="dataset", digest="d" * 32,
                                  files={name: src}, manifest={name: "x"}, metadata={}, aliases=[],
                                  logged_by={})
    assert backend.list() == []


def _log_in_child(root: str, index: int, content: bytes) -> None:
    log(make_backend(Path(root)), Path(root).parent / f"child-{index}", content)


def log_concurrently(root: Path, contents: list[bytes]) -> list[int]:
    """One process per content, all logging to one collection at once; their exit codes."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_log_in_child, args=(str(root), i, c)) for i, c in enumerate(contents)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    return [p.exitcode for p in procs]


def test_concurrent_writers_lose_no_version(tmp_path):
    root = tmp_path / "store"
    assert log_concurrently(root, [f"content-{i}".encode() for i in range(4)]) == [0, 0, 0, 0]
    backend = make_backend(root)
    versions = backend.list("things")
    assert sorted(v.version for v in versions) == [0, 1, 2, 3]
    assert len({v.digest for v in versions}) == 4
    for v in versions:
        assert (backend.use(FakeRun(), v.ref, "dataset").path / "f.bin").is_file()


def test_an_alias_guard_refuses_a_move_decided_against_an_older_state(backend, tmp_path):
    """Promotion is compare-and-set: production moves only from where the gate saw it."""
    log(backend, tmp_path, b"a", name="m", type="model")
    log(backend, tmp_path, b"b", name="m", type="model")
    backend.link("m:v0", "m", ["production"])
    with pytest.raises(UserError, match="'production' of m moved to v0 while this step ran"):
        backend.link("m:v1", "m", ["production"], guard={"production": None})
    with pytest.raises(UserError, match="moved to v0"):
        backend.set_alias("wandb-registry-model/m:v0", "production", guard={"production": 1})
    assert backend.peek("wandb-registry-model/m:production").source == "m:v0"
    assert len(backend.list("wandb-registry-model/m")) == 1  # the refused link added no version
    moved = backend.link("m:v1", "m", ["production"], guard={"production": 0})
    assert moved.source == "m:v1" and moved.aliases == ["latest", "production"]


def test_a_failed_index_write_is_a_clear_error_and_lists_nothing(backend, tmp_path, monkeypatch):
    log(backend, tmp_path, b"a")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.tracking.store.os.replace", no_space)
    with pytest.raises(UserError, match="could not write .*No space left on device.*the store is unchanged"):
        log(backend, tmp_path, b"b")
    monkeypatch.undo()
    assert [v.ref for v in backend.list()] == ["things:v0"]
    assert not list((tmp_path / "store" / "collections").rglob(".*"))  # no temporary index left behind


def test_a_link_across_projects_keeps_the_source_project(tmp_path):
    root = tmp_path / "store"
    other = OfflineBackend(Settings(mode="offline", project="elsewhere", entity=None, model_retrain=None,
                                    model_eval=None, store_dir=root, base_url="http://x.invalid"))
    log(other, tmp_path, b"weights", name="m", type="model")
    here = make_backend(root)
    linked = here.link("elsewhere/m:v0", "m", ["candidate"])
    assert linked.source == "elsewhere/m:v0"
    used = here.use(FakeRun("reader"), "wandb-registry-model/m:candidate", "model")
    assert used.path.is_dir()
    assert [u["id"] for u in other.peek("m:v0").used_by] == ["reader"]  # lineage reaches the source


def test_find_returns_the_aliased_version_of_each_collection_newest_first(backend, tmp_path):
    log(backend, tmp_path, b"a", name="a-split")
    log(backend, tmp_path, b"b", name="b-split")
    log(backend, tmp_path, b"m", name="b-cnn", type="model")
    found = backend.find("dataset", "latest", registry=False)
    assert {v.ref for v in found} == {"a-split:v0", "b-split:v0"}
    assert found[0].created_at >= found[1].created_at
    assert backend.find("model", "candidate", registry=True) == []
    backend.link("b-cnn:v0", "b-cnn", ["candidate"])
    assert [v.ref for v in backend.find("model", "candidate", registry=True)] == ["wandb-registry-model/b-cnn:v0"]


def test_the_sdk_internals_are_there_and_agree_with_their_fallbacks(tmp_path):
    """app/tracking/sdk_internals.py: each internal of the wandb SDK is found and gives what its
    fallback computes. A failure here means the SDK changed: look at that function again."""
    import wandb

    from app.tracking import sdk_internals
    from app.tracking.backends import build_wandb_artifact

    files = {"a.bin": tmp_path / "a.bin", "sub/b.txt": tmp_path / "b.txt"}
    files["a.bin"].write_bytes(bytes(range(256)) * 5000)
    files["sub/b.txt"].write_text("b")
    md5 = sdk_internals.sdk_md5()
    assert md5 is not None
    assert all(md5(str(p)) == sdk_internals.md5_b64_fallback(p) for p in files.values())
    art = build_wandb_artifact("things", "dataset", files, {})
    assert set(art.manifest.entries) == set(files)  # the internal manifest is there ...
    assert sdk_internals.manifest_digests(art, files) == {n: sdk_internals.md5_b64_fallback(p) for n, p in files.items()}
    assert "x_disable_stats" in wandb.Settings.model_fields  # ... and the experimental setting
    assert sdk_internals.quiet_run_settings()["x_disable_stats"] is True


def test_a_process_that_ended_but_was_not_reaped_yet_is_not_alive():
    """A trial killed with its agent waits for init to reap it (seconds, in some containers): a
    zombie runs no more, so its sweep slot is free."""
    import subprocess
    import sys
    import time

    from app.processes import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child.pid)
    child.wait()
    assert pid_alive(os.getpid())


def test_both_backends_implement_the_declared_interface_and_nothing_public_beside_it():
    """backends.Backend is the one interface: the same methods, parameters and defaults in both."""
    import inspect

    from app.tracking.backends import Backend, OnlineBackend

    declared = {n for n, f in vars(Backend).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert len(declared) == 15
    for backend in (OfflineBackend, OnlineBackend):
        public = {n for n, f in vars(backend).items() if inspect.isfunction(f) and not n.startswith("_")}
        assert declared <= public, f"{backend.__name__} lacks {declared - public}"
        for name in declared:
            expected = inspect.signature(getattr(Backend, name)).parameters
            got = inspect.signature(getattr(backend, name)).parameters
            assert [(p.name, p.default) for p in got.values()] == [(p.name, p.default) for p in expected.values()], \
                f"{backend.__name__}.{name}"
        helpers = public - declared
        assert helpers <= {"api", "paged"}, helpers  # OnlineBackend's own, used inside it
