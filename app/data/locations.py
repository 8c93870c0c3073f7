"""Where an image folder lives: a folder on this machine, or a prefix of an S3 or Google Cloud
Storage bucket (`--data-dir s3://bucket/photos`, `gs://bucket/photos`), one sub-folder (prefix)
per class either way. data_prep lists and reads the images through a Location, and a split of
references (data_prep --reference) reads and checks its source images through one.

Buckets are read with the clients W&B's own reference handlers use, configured as those are, so
what data_prep can list W&B can reference: boto3 (AWS's credential chain; AWS_S3_ENDPOINT_URL and
AWS_REGION as W&B reads them) and google-cloud-storage (application default credentials; an
emulator by STORAGE_EMULATOR_HOST). Each file's digest is the one W&B's manifest records for it:
a local file's base64 MD5, an S3 object's ETag, a GCS object's etag; a bucket's listing gives
them all at once, so checking 200,000 objects is a listing, not 200,000 reads.
"""
from __future__ import annotations

import base64
import collections
import functools
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.errors import UserError, summary

BUCKET_SCHEMES = ("s3", "gs")
READERS = 32  # threads fetching a bucket's objects: each waits on the network, not on the CPU
INSTALL = {"s3": "boto3 (pip install boto3, or pip install -e '.[buckets]')",
           "gs": "google-cloud-storage (pip install google-cloud-storage, or pip install -e '.[buckets]')"}


class SourceChanged(OSError):
    """A file read now is not the one a split recorded (its digest differs): the folder changed
    after the split was logged, or while a run was reading it."""


def is_bucket(text) -> bool:
    return isinstance(text, str) and text.split("://", 1)[0] in BUCKET_SCHEMES and "://" in text


def location(text: str | Path) -> LocalFolder | BucketPrefix:
    """`--data-dir` as a Location: `s3://bucket/prefix` and `gs://bucket/prefix` are bucket prefixes,
    anything else a local folder."""
    if not is_bucket(text):
        return LocalFolder(Path(text))
    scheme, rest = str(text).split("://", 1)
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise UserError(f"{text} names no bucket; write {scheme}://BUCKET/FOLDER.")
    return BucketPrefix(scheme, bucket, prefix.strip("/"))


def current_digests(uris: list[str]) -> dict[str, str | None]:
    """Each file:// / s3:// / gs:// URI's digest now as W&B's manifest records it (None: gone),
    through the Location of its folder: a bucket's objects are listed once per folder."""
    from urllib.parse import unquote, urlparse

    folders: dict[str, list[tuple[str, str]]] = {}  # folder -> [(name in it, uri)]
    for uri in uris:
        if uri.startswith("file://"):
            path = Path(unquote(urlparse(uri).path))
            folder, name = str(path.parent), path.name
        else:
            folder, _, name = uri.rpartition("/")
        folders.setdefault(folder, []).append((name, uri))
    found = {}
    for folder, entries in folders.items():
        now = location(folder).digests([name for name, _ in entries])
        found.update({uri: now[name] for name, uri in entries})
    return found


def file_md5_b64(path: Path) -> str:
    """What W&B's manifests record for a local file: the base64 of its MD5 (read in blocks)."""
    digest = hashlib.md5(usedforsecurity=False)  # W&B's content digest
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


def bytes_md5_b64(data: bytes) -> str:
    """What W&B's manifests record for a local file with these bytes: the base64 of their MD5."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


def name_order(name: str) -> list[str]:
    """Files sort by their path's parts, as pathlib sorts them (earlier versions listed folders so:
    the same folder keeps the same order, split and digest)."""
    return name.split("/")


class LocalFolder:
    remote = False

    def __init__(self, root: Path):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    @functools.cached_property
    def absolute(self) -> Path:
        return self.root.resolve()

    @property
    def name(self) -> str:
        return self.absolute.name

    @property
    def uri(self) -> str:
        return self.absolute.as_uri()

    @property
    def recorded(self) -> str:
        """How references.json names it: the absolute path."""
        return str(self.absolute)

    def file_uri(self, name: str) -> str:
        return (self.absolute / name).as_uri()

    def folders(self) -> list[str]:
        if not self.root.is_dir():
            raise UserError(f"--data-dir {self.root} is not a folder; pass a folder with one sub-folder of images "
                            "per class.")
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def files(self, folder: str) -> list[str]:
        """Every file under `folder`, as names relative to the root."""
        return [p.relative_to(self.root).as_posix() for p in sorted((self.root / folder).rglob("*")) if p.is_file()]

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def source(self, name: str) -> Path:
        """What Pillow opens: the path (a header is read without the rest of the file)."""
        return self.root / name

    def sources(self, names: list[str], expected: list[str] | None = None):
        """What Pillow opens for each name, in order (an error opening it is met by the reader).
        With `expected` (each file's recorded digest): the bytes read, checked against it, so what
        is decoded is what was recorded; a file that differs is a SourceChanged in its place."""
        if expected is None:
            return (self.source(name) for name in names)
        return (self._checked(name, digest) for name, digest in zip(names, expected))

    def _checked(self, name: str, expected: str) -> NamedBytes | OSError:
        try:
            data = self.read(name)
        except OSError as err:
            return err
        if bytes_md5_b64(data) != expected:
            return SourceChanged(f"{self.root / name} changed since the split was logged")
        return NamedBytes(data, str(self.root / name))

    def unreferenceable(self, names: list[str]) -> list[str]:
        return []  # W&B's file:// references take any name (percent-encoded by as_uri)

    def digests(self, names: list[str]) -> dict[str, str | None]:
        """Each file's digest now (None: gone), reading every file."""
        found = {}
        for name in names:
            try:
                found[name] = file_md5_b64(self.root / name)
            except OSError:
                found[name] = None
        return found


class BucketPrefix:
    """The objects under `scheme://bucket/prefix/`. Its client is this process's (client()), so a
    DataLoader worker or a decoding process, spawned or forked, uses its own."""

    remote = True

    def __init__(self, scheme: str, bucket: str, prefix: str):
        self.scheme, self.bucket, self.prefix = scheme, bucket, prefix
        self._listing: dict[str, str] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_listing": None}  # a worker lists again if it needs to

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def name(self) -> str:
        return self.prefix.rsplit("/", 1)[-1] if self.prefix else self.bucket

    @property
    def uri(self) -> str:
        return str(self)

    recorded = uri

    def file_uri(self, name: str) -> str:
        return f"{self}/{name}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def listing(self) -> dict[str, str]:
        """{name relative to the prefix: digest} of every object under it (listed once)."""
        if self._listing is None:
            self._listing = self._list_now()
            if not self._listing:
                raise UserError(f"{self} holds no object; pass the prefix above the class folders "
                                f"({self}/CLASS/IMAGE.jpg), and check the bucket's name.")
        return self._listing

    def _list_now(self) -> dict[str, str]:
        client = self.client()
        start = len(self.prefix) + 1 if self.prefix else 0
        with client.errors(self):
            return {key[start:]: digest for key, digest in client.list(self.bucket, self._key(""))
                    if not key.endswith("/")}  # a console's "folder" marker is no file

    def folders(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in self.listing() if "/" in name})

    def files(self, folder: str) -> list[str]:
        return sorted((n for n in self.listing() if n.startswith(folder + "/")), key=name_order)

    def listed_digest(self, name: str) -> str:
        return self.listing()[name]

    def read(self, name: str, expected: str | None = None) -> bytes:
        """The object's bytes; OSError when it is gone or cannot be read (a skipped or missing file),
        SourceChanged when `expected` is given and the object's digest now is another."""
        client = self.client()
        try:
            return client.get(self.bucket, self._key(name), expected)
        except _Changed:
            raise SourceChanged(f"{self.file_uri(name)} changed since the split was logged") from None
        except client.missing as err:
            raise FileNotFoundError(f"{self.file_uri(name)} is not there ({summary(err)})") from err
        except Exception as err:
            if isinstance(err, client.fatal):  # no credentials, access denied, no network: the same for every file
                with client.errors(self):
                    raise
            raise OSError(f"{self.file_uri(name)} cannot be read ({summary(err)})") from err

    def source(self, name: str, expected: str | None = None) -> io.BytesIO:
        """What Pillow opens: the object's bytes, named by its URI in Pillow's messages."""
        return NamedBytes(self.read(name, expected), self.file_uri(name))

    def sources(self, names: list[str], expected: list[str] | None = None):
        """Each name's bytes to open, or the OSError that fetching it met, in order: fetched by
        READERS threads, at most 2 x READERS ahead of the reader (so memory holds as many objects).
        With `expected` (each object's recorded digest), an object whose digest now differs is a
        SourceChanged in its place (S3: the ETag that came with the bytes; GCS: a download on
        the condition that the etag matches)."""
        def fetched(name, digest):
            try:
                return self.source(name, digest)
            except OSError as err:
                return err

        self.client()  # made once, before the threads share it
        with ThreadPoolExecutor(READERS) as pool:
            ahead = collections.deque()
            for name, digest in zip(names, expected or [None] * len(names)):
                ahead.append(pool.submit(fetched, name, digest))
                if len(ahead) > 2 * READERS:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    def unreferenceable(self, names: list[str]) -> list[str]:
        """Names W&B's S3 and GCS handlers cannot reference: they parse a reference as a URL
        without unquoting it, so a '?' starts a query and a '#' a fragment (a version), and the
        object is not found (checked with W&B 0.31: ValueError in add_reference)."""
        return [name for name in names if "?" in name or "#" in name]

    def digests(self, names: list[str]) -> dict[str, str | None]:
        """Each object's digest now (None: gone), from one listing."""
        now = self._list_now()
        return {name: now.get(name) for name in names}

    def client(self):
        """This process's client for the scheme, made on first use (~80 ms): a decoding process gets a
        pickled BucketPrefix with each task, and a forked process must not share its parent's
        connections, so clients are kept per scheme and process, not per BucketPrefix."""
        key = (self.scheme, os.getpid())
        if key not in _CLIENTS:
            _CLIENTS[key] = S3Client() if self.scheme == "s3" else GCSClient(self)
        return _CLIENTS[key]


_CLIENTS: dict[tuple[str, int], object] = {}


class NamedBytes(io.BytesIO):
    def __init__(self, data: bytes, uri: str):
        super().__init__(data)
        self.uri = uri

    def __repr__(self) -> str:  # Pillow's "cannot identify image file %r"
        return repr(self.uri)


class _Errors:
    """A bucket client's failures that stop everything, said as what to do."""

    def __init__(self, client, where: BucketPrefix):
        self.client, self.where = client, where

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, UserError):
            return False
        text = self.client.explain(err, self.where)
        if text is None:
            return False
        raise UserError(f"{self.where}: {text}") from err


class _Client:
    def errors(self, where: BucketPrefix) -> _Errors:
        """A context that turns this client's failures for every object into a UserError (explain)."""
        return _Errors(self, where)


class S3Client(_Client):
    """boto3, configured as W&B's S3 handler configures it."""

    def __init__(self):
        boto3 = _import("boto3", "s3")
        from botocore.config import Config
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError
        from botocore.exceptions import EndpointConnectionError, ConnectionError as BotoConnectionError

        self._s3 = boto3.session.Session().client(
            "s3", endpoint_url=os.getenv("AWS_S3_ENDPOINT_URL") or None, region_name=os.getenv("AWS_REGION") or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=15, read_timeout=60))
        self._client_error = ClientError
        self.missing = _S3Missing
        self._credentials = (NoCredentialsError, PartialCredentialsError)
        self._network = (EndpointConnectionError, BotoConnectionError)
        self.fatal = (*self._credentials, *self._network, _S3Denied)

    def list(self, bucket: str, prefix: str):
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["ETag"].strip('"')  # W&B's S3 handler records the ETag unquoted

    def get(self, bucket: str, key: str, expected: str | None = None) -> bytes:
        try:
            found = self._s3.get_object(Bucket=bucket, Key=key)
            if expected is not None and found["ETag"].strip('"') != expected:  # the very bytes' ETag
                raise _Changed(key)
            return found["Body"].read()
        except self._client_error as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise _S3Missing(str(err)) from err
            if code in DENIED or code == "NoSuchBucket":
                raise _S3Denied(code) from err
            raise

    def explain(self, err: BaseException, where: BucketPrefix) -> str | None:
        if isinstance(err, self._credentials):
            return ("no AWS credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                    "or run `aws configure`.")
        if isinstance(err, self._network):
            return (f"S3 cannot be reached ({summary(err)}). Check the network, or AWS_S3_ENDPOINT_URL for an "
                    "S3-compatible store.")
        code = err.response.get("Error", {}).get("Code", "") if isinstance(err, self._client_error) else \
            err.args[0] if isinstance(err, _S3Denied) else ""
        if code == "NoSuchBucket":
            return f"the bucket {where.bucket} does not exist; check the name in --data-dir."
        if code in DENIED:
            return (f"access denied ({code}). Check that the AWS credentials in use may list and read "
                    f"{where.bucket}.")
        if isinstance(err, self._client_error):
            return f"S3 refused the request ({summary(err)})."
        return None


DENIED = ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled")


class _S3Missing(Exception):
    pass


class _Changed(Exception):
    """An object's digest is not the one expected (a client's get)."""


class _S3Denied(Exception):
    """Refused for every object alike (its argument: S3's error code)."""


class GCSClient(_Client):
    """google-cloud-storage, as W&B's GCS handler makes it (storage.Client(): application default
    credentials; STORAGE_EMULATOR_HOST honoured)."""

    def __init__(self, where: BucketPrefix):
        storage = _import("google.cloud.storage", "gs")
        from google.api_core import exceptions
        from google.auth.exceptions import DefaultCredentialsError, TransportError
        from requests.exceptions import ConnectionError as RequestsConnectionError

        self._exceptions = exceptions
        self._credentials = DefaultCredentialsError
        self.missing = exceptions.NotFound
        self._network = (TransportError, RequestsConnectionError)
        self.fatal = (DefaultCredentialsError, exceptions.Forbidden, exceptions.Unauthorized, *self._network)
        try:
            self._gcs = storage.Client()
        except DefaultCredentialsError as err:
            raise UserError(f"{where}: {self._no_credentials()}") from err
        except OSError as err:  # google-cloud-storage: "Project was not passed and could not be determined"
            raise UserError(f"{where}: {summary(err)}. Set GOOGLE_CLOUD_PROJECT to the bucket's project.") from err

    @staticmethod
    def _no_credentials() -> str:
        return ("no Google Cloud credentials found. Run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service account's key file.")

    def list(self, bucket: str, prefix: str):
        for blob in self._gcs.list_blobs(bucket, prefix=prefix):
            yield blob.name, blob.etag  # W&B's GCS handler records the etag

    def get(self, bucket: str, key: str, expected: str | None = None) -> bytes:
        try:
            return self._gcs.bucket(bucket).blob(key).download_as_bytes(if_etag_match=expected)
        except self._exceptions.PreconditionFailed as err:  # its etag is not `expected`
            raise _Changed(key) from err

    def explain(self, err: BaseException, where: BucketPrefix) -> str | None:
        if isinstance(err, self._credentials):
            return self._no_credentials()
        if isinstance(err, self._network):
            return f"Google Cloud Storage cannot be reached ({summary(err)}). Check the network."
        if isinstance(err, self._exceptions.NotFound):
            return f"the bucket {where.bucket} does not exist; check the name in --data-dir."
        if isinstance(err, (self._exceptions.Forbidden, self._exceptions.Unauthorized)):
            return f"access denied. Check that the credentials in use may list and read {where.bucket}."
        if isinstance(err, self._exceptions.GoogleAPIError):
            return f"Google Cloud Storage refused the request ({summary(err)})."
        return None


def _import(module: str, scheme: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"{scheme}:// folders need {INSTALL[scheme]}; it is not installed ({summary(err)}).") from err
