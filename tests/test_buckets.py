"""Image folders in buckets (#22): `--data-dir s3://...` and `gs://...`, copied into the split or
referenced (--reference), read by train and evaluate, a changed object named, and every bucket
failure a clear message.

S3 and Google Cloud Storage cannot be reached from here: moto's S3 server and gcp-storage-emulator
stand in for them, on this machine. Everything else runs for real: boto3 and google-cloud-storage,
and W&B's own S3 and GCS reference handlers, which compute the checksums the store records.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket

import numpy as np
import pytest
from PIL import Image

from app.data.split import SPLITS
from app.data.split_files import read_split
from test_online_contract import online, standin  # noqa: F401 (fixtures)
from test_shards import artifact_files, colour_folder

SECRET = "s3cr3t-never-logged-7f1c"  # the stand-in accepts any key: this one must appear nowhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def servers():
    """moto's S3 server and a GCS emulator on this machine, and the environment that points the
    clients (ours and W&B's) at them, as a user's AWS / Google settings would."""
    import logging

    from gcp_storage_emulator.server import create_server
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    s3.start()
    gcs_port = free_port()
    gcs = create_server("127.0.0.1", gcs_port, in_memory=True)
    gcs.start()
    host, port = s3.get_host_and_port()
    env = {"AWS_S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test-key",
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs_port}", "GOOGLE_CLOUD_PROJECT": "test",
           "NO_GCE_CHECK": "true"}
    yield env
    s3.stop()
    gcs.stop()


@pytest.fixture
def bucket_env(servers, monkeypatch):
    for key, value in servers.items():
        monkeypatch.setenv(key, value)
    return servers


class Bucket:
    """A bucket on a stand-in server, written through the real client."""

    def __init__(self, scheme: str, name: str):
        self.scheme, self.name = scheme, name
        if scheme == "s3":
            import boto3

            self.s3 = boto3.client("s3", endpoint_url=__import__("os").environ["AWS_S3_ENDPOINT_URL"])
            self.s3.create_bucket(Bucket=name)
        else:
            from google.cloud import storage

            self.gcs = storage.Client()
            self.gcs.create_bucket(name)

    def put(self, key: str, data: bytes) -> None:
        if self.scheme == "s3":
            self.s3.put_object(Bucket=self.name, Key=key, Body=data)
        else:
            self.gcs.bucket(self.name).blob(key).upload_from_string(data)

    def delete(self, key: str) -> None:
        if self.scheme == "s3":
            self.s3.delete_object(Bucket=self.name, Key=key)
        else:
            self.gcs.bucket(self.name).blob(key).delete()

    def upload(self, folder, prefix: str) -> str:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.put(f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes())
        return f"{self.scheme}://{self.name}/{prefix}"


def registry_state(ws):
    return [(v["collection"], v["version"], v["digest"], sorted(v["aliases"])) for v in ws.registry()]


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_bucket_folder_is_copied_or_referenced_trained_on_and_a_changed_object_named(workspace, bucket_env, scheme):
    """A bucket's folder copied into the split gives the very version the same folder here gives
    (same files, same digest); --reference records each object's W&B checksum (its ETag / etag, as
    W&B's handler computes it) in the store; train (in memory, and --stream in a DataLoader
    worker with its own client) and evaluate read the objects; an overwritten and a deleted object
    stop train with their names, nothing logged; the AWS secret reaches no file."""
    ws = workspace
    ws.env.update(bucket_env)
    colour_folder(ws.path / "photos", per_class=12)
    bucket = Bucket(scheme, f"pics-{scheme}")
    uri = bucket.upload(ws.path / "photos", "shared/photos")

    here = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "photos", "--image-size", "12").stdout
    copied = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size", "12").stdout
    assert "photos-split:v0" in here and "photos-split:v0" in copied, copied  # the bucket's copy: the same version
    assert len(ws.versions("photos-split")) == 1

    out = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size", "12", "--reference",
                 "--name", "remote").stdout
    assert f"images referenced in {uri}" in out
    entry, folder = artifact_files(ws, "remote-split")
    assert json.loads((folder / "references.json").read_text())["root"] == uri
    assert entry["metadata"]["references"]["root"] == uri and entry["metadata"]["source"] == f"image folder {uri}"
    records = next(json.loads(p.read_text()) for p in (ws.store / "collections").rglob("remote-split.json"))
    references = records["versions"][0]["references"]
    assert len(references) == sum(entry["metadata"]["split_sizes"].values())
    from app.data.locations import location

    listed = location(uri).listing()
    for name, reference in references.items():
        assert reference["uri"] == f"{uri}/{name.removeprefix('images/')}"
        assert reference["digest"] == listed[name.removeprefix("images/")]  # W&B's handler's digest = the listing's
    copy, copy_folder = artifact_files(ws, "photos-split")
    a, b = read_split(copy_folder), read_split(folder)
    for s in SPLITS:
        assert np.array_equal(a.images[s], b.images[s]) and np.array_equal(a.labels[s], b.labels[s])

    flags = ("--dataset", "remote", "--epochs", "2", "--checkpoint-every", "0")
    assert "remote-convnet:v0" in ws.run("train", *flags).stdout
    if scheme == "s3":
        assert "remote-convnet:v0" in ws.run("train", *flags, "--stream", "1").stdout  # same model from a worker
    assert "test accuracy" in ws.run("evaluate", "--model", "remote-convnet:v0", "--no-generate-images",
                                     "--workers", "1").stdout

    before = registry_state(ws)
    changed, gone = sorted(references)[0].removeprefix("images/"), sorted(references)[1].removeprefix("images/")
    rotated = Image.open(ws.path / "photos" / changed).rotate(90)
    rotated.save(ws.path / "rotated.png")
    bucket.put(f"shared/photos/{changed}", (ws.path / "rotated.png").read_bytes())
    bucket.delete(f"shared/photos/{gone}")
    proc = ws.run("train", *flags, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"source images in {uri}: 1 changed since the split was logged ({changed}); 1 missing ({gone})" \
        in proc.stderr
    assert registry_state(ws) == before
    again = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size", "12", "--reference",
                   "--name", "remote")
    assert "remote-split:v1" in again.stdout  # a changed bucket is a new version

    for path in ws.path.rglob("*"):
        if path.is_file() and path.stat().st_size < 50 * 2**20:
            assert SECRET.encode() not in path.read_bytes(), path


def test_wandb_reference_digests_of_bucket_objects_and_their_fallback_agree(bucket_env, tmp_path):
    """sdk_internals.reference_digests reads the manifest W&B builds for s3:// and gs://
    references (its handlers contact the buckets); its fallback (no manifest) gives the same."""
    import wandb

    from app.tracking.sdk_internals import reference_digests

    for scheme in ("s3", "gs"):
        bucket = Bucket(scheme, f"digests-{scheme}")
        bucket.put("a/x.png", b"one")
        bucket.put("b/y.png", b"two")
        refs = {"images/a/x.png": f"{scheme}://digests-{scheme}/a/x.png",
                "images/b/y.png": f"{scheme}://digests-{scheme}/b/y.png"}
        art = wandb.Artifact("d", "dataset")
        for name, uri in refs.items():
            art.add_reference(uri, name=name, checksum=True)
        recorded = reference_digests(art, refs)
        assert {n: r["digest"] for n, r in recorded.items()} == {n: art.manifest.entries[n].digest for n in refs}

        class NoManifest:
            pass

        assert reference_digests(NoManifest(), refs) == recorded


def test_bucket_failures_are_clear_messages_that_log_nothing(workspace, bucket_env):
    ws = workspace
    ws.env.update(bucket_env)
    Bucket("s3", "failures").put("photos/a/x.png", b"not an image")

    def refused(uri, *, env=None, expect):
        proc = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size", "8",
                      check=False, env=env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert expect in proc.stderr, proc.stderr
        assert SECRET not in proc.stderr + proc.stdout

    refused("s3://no-such-bucket/photos", expect="the bucket no-such-bucket does not exist")
    refused("gs://no-such-bucket/photos", expect="the bucket no-such-bucket does not exist")
    refused("s3://failures/nothing-here", expect="s3://failures/nothing-here holds no object")
    refused("s3://failures/photos", expect="has 1 class folder(s)")
    no_keys = {k: v for k, v in ws.env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
    no_keys.update(AWS_SHARED_CREDENTIALS_FILE=str(ws.path / "none"), AWS_CONFIG_FILE=str(ws.path / "none"))
    refused("s3://failures/photos", env=no_keys, expect="no AWS credentials found")
    refused("s3://failures/photos", env={**ws.env, "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"},
            expect="S3 cannot be reached")
    no_gcs = {k: v for k, v in ws.env.items() if k != "STORAGE_EMULATOR_HOST"}
    no_gcs.update(GOOGLE_APPLICATION_CREDENTIALS=str(ws.path / "none.json"), CLOUDSDK_CONFIG=str(ws.path / "none"))
    refused("gs://failures/photos", env=no_gcs, expect="gs://failures/photos: no Google Cloud credentials found")
    odd = Bucket("s3", "odd-names")
    colour_folder(ws.path / "odd", per_class=10)
    (ws.path / "odd" / "red" / "000.png").rename(ws.path / "odd" / "red" / "what?.png")
    uri = odd.upload(ws.path / "odd", "odd")
    proc = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size", "8", "--reference",
                  check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "1 file name(s) in s3://odd-names/odd hold '?' or '#'" in proc.stderr and "red/what?.png" in proc.stderr
    assert ws.registry() == []
    assert "odd-split:v0" in ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size",
                                    "8").stdout  # copied: any name is read
    proc = ws.run("data_prep", "--dataset", "mnist", "--data-dir", "s3://failures/mnist", check=False)
    assert proc.returncode == 2 and "a bucket is read for --dataset imagefolder" in proc.stderr
    assert [v["collection"] for v in ws.registry()] == ["odd-split"]


def test_online_a_reference_version_downloads_only_its_own_files_checked(workspace, bucket_env, standin, online):
    """Online, the real SDK against the stand-in: using a version of s3:// references fetches its
    manifest and its own files (labels, classes, references.json), never an image; the split then
    reads its images from the bucket. A file served with other bytes than its manifest's digest
    is refused by name."""
    from app.errors import UserError

    ws = workspace
    ws.env.update(bucket_env)
    colour_folder(ws.path / "photos", per_class=10)
    uri = Bucket("s3", "online-refs").upload(ws.path / "photos", "photos")
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", uri, "--image-size", "12", "--reference")
    entry, folder = artifact_files(ws, "photos-split")
    records = next(json.loads(p.read_text()) for p in (ws.store / "collections").rglob("photos-split.json"))
    own = {p.name: p.read_bytes() for p in folder.iterdir()}
    standin.add_artifact("photos-split", "dataset", entry["digest"], entry["metadata"], files=own,
                         references=records["versions"][0]["references"])

    info = online.fetch("photos-split:v0", "dataset")
    assert sorted(p.name for p in info.path.iterdir()) == sorted(own) == sorted(entry["metadata"]["references"]["files"])
    fetched = [path for path in standin.downloads if path.startswith("/artifacts/")]
    assert len(fetched) == len(own)  # no image: the references stay in the bucket
    here, there = read_split(folder), read_split(info.path)
    for s in SPLITS:
        assert np.array_equal(here.images[s], there.images[s]) and np.array_equal(here.labels[s], there.labels[s])

    standin.blobs[hashlib.md5(own["classes.json"]).hexdigest()] = b'["tampered"]'
    shutil.rmtree(os.environ["WANDB_CACHE_DIR"], ignore_errors=True)  # W&B's cache holds the good bytes
    with pytest.raises(UserError, match="classes.json of photos-split:v0 does not match its checksum"):
        online.fetch("photos-split:v0", "dataset")


def test_a_pool_of_processes_decodes_a_buckets_objects_as_this_process_does(bucket_env, tmp_path):
    """data_prep's spawn pool (folders of 2,000 images and more) on a bucket: each process opens
    its own client; the images and the listing's digests are those of decoding here."""
    import multiprocessing

    from app.data.imagefolder import decode, scan_image_folder
    from app.data.locations import location

    colour_folder(tmp_path / "pics", per_class=8)
    uri = Bucket("s3", "pool").upload(tmp_path / "pics", "pics")
    scan = scan_image_folder(location(uri), (12, 12), strict=False)
    indices = np.arange(len(scan.files))[::-1]
    here = decode(scan, indices, digests=True, signatures=True)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pooled = decode(scan, indices, pool, digests=True, signatures=True)
    assert np.array_equal(here[0], pooled[0]) and np.array_equal(here[1], pooled[1]) and here[2] == pooled[2]
    assert np.array_equal(here[3], pooled[3]) and np.abs(pooled[3][pooled[1]]).sum(axis=1).min() > 0
    listed = location(uri).listing()
    assert pooled[2][0] == listed[scan.files[indices[0]]]
    assert pooled[1].all() and len(indices) == 24  # the truncated JPEG: skipped by its header here


def test_an_s3_object_replaced_while_a_run_reads_it_is_refused_when_it_is_read(bucket_env, tmp_path):
    """#37: each object read is checked, not only the listing when the run starts: S3's GetObject
    ETag of the very bytes against the digest the split recorded. (gcp-storage-emulator ignores
    the If-Match condition GCS reads are made with, so GCS is checked by its listing only here.)"""
    from app.data.references import ReferencedImages
    from app.data.locations import location
    from app.errors import UserError

    colour_folder(tmp_path / "pics", per_class=4)
    bucket = Bucket("s3", "midrun")
    uri = bucket.upload(tmp_path / "pics", "pics")
    listed = location(uri).listing()
    names = sorted(n for n in listed if n.endswith(".png"))[:4]
    images = ReferencedImages({"root": uri, "channels": 3, "size": [12, 12],
                               "splits": {"train": [[n, listed[n]] for n in names]}}, "train")
    assert images[:].shape == (4, 12, 12, 3)
    bucket.put(f"pics/{names[2]}", (tmp_path / "pics" / names[0]).read_bytes())
    with pytest.raises(UserError, match=f"changed while this run read them: .*{names[2]}"):
        images[:]
    assert images[0:2].shape == (2, 12, 12, 3)
