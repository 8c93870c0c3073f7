"""Reading an image folder from a bucket: the objects fetched by READERS threads against one at a
time (the reference, the same code with one thread), measured in the same run.

    python benchmarks/bench_buckets.py [--images 2000] [--latency-ms 0 20]

moto's S3 server on this machine stands in for S3 (no bucket can be reached from here). A real
GET pays a network round trip (~10-30 ms to S3 in the same region for a small object) that a
local server does not; `--latency-ms` models it as a sleep before each request is sent (botocore's
`before-send` event), so the figures show what the threads buy where the wait is the network's.
Measured, for 64x64 colour JPEGs under s3://bench/photos:
- the header scan data_prep makes (`scan_image_folder`), against the same folder on local disk;
- reading and decoding every image of a referenced split (`ReferencedImages.take`: train's load
  into memory, each DataLoader worker's batch with --stream, evaluate's batches);
- W&B's own `add_reference(uri, checksum=True)` of every object (what data_prep --reference logs:
  W&B's S3 handler asks for each object in turn), for the time it adds to data_prep.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.data import locations  # noqa: E402
from app.data.imagefolder import scan_image_folder  # noqa: E402
from app.data.references import ReferencedImages  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3() -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_S3_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")


def write_folder(root: Path, images: int, classes: int = 4) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    names = []
    for i in range(images):
        name = f"c{i % classes}/{i:06d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / name, quality=90)
        names.append(name)
    return names


def upload(root: Path, names: list[str]) -> str:
    import boto3
    from concurrent.futures import ThreadPoolExecutor

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_S3_ENDPOINT_URL"])
    s3.create_bucket(Bucket="bench")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: s3.put_object(Bucket="bench", Key=f"photos/{n}", Body=(root / n).read_bytes()), names))
    return "s3://bench/photos"


def with_latency(where, seconds: float):
    """The bucket's client, every request delayed by `seconds` before it is sent."""
    client = where.client()._s3  # boto3's client inside app/data/locations.S3Client
    if seconds:
        client.meta.events.register("before-send.s3.*", lambda **_: time.sleep(seconds))
    return where


def wandb_references(uri: str, names: list[str], seconds: float) -> float:
    """Seconds W&B's add_reference takes for every object, each request delayed by `seconds`
    (W&B's handler makes its own boto3 resource: the delay is registered on each one made)."""
    import boto3
    import wandb

    made = boto3.session.Session.resource

    def resource(self, *args, **kwargs):
        res = made(self, *args, **kwargs)
        if seconds:
            res.meta.client.meta.events.register("before-send.s3.*", lambda **_: time.sleep(seconds))
        return res

    boto3.session.Session.resource = resource
    try:
        art = wandb.Artifact("bench", "dataset")
        return timed(lambda: [art.add_reference(f"{uri}/{n}", name=f"images/{n}", checksum=True) for n in names])
    finally:
        boto3.session.Session.resource = made


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20])
    args = p.parse_args(argv)
    start_s3()
    with tempfile.TemporaryDirectory(prefix="bench_buckets-") as tmp:
        root = Path(tmp) / "photos"
        names = write_folder(root, args.images)
        uri = upload(root, names)
        local = timed(lambda: scan_image_folder(locations.location(root), None, False))
        print(f"{args.images} 64x64 JPEGs; {locations.READERS} reader threads against 1; latency modelled per request")
        print(f"header scan of the folder on local disk: {local:.2f} s")
        print("| latency | step | 1 reader s | threads s | speed-up |")
        print("| --- | --- | --- | --- | --- |")
        threads = locations.READERS
        for latency in args.latency_ms:
            seconds = {}
            for readers in (1, threads):
                locations.READERS = readers
                where = with_latency(locations.location(uri), latency / 1000)
                where.listing()  # the listing is one request a side: not what is compared
                scan = scan_image_folder(where, None, False)
                scan_s = timed(lambda: scan_image_folder(where, None, False))
                listing = {"root": uri, "channels": 3, "size": [64, 64],
                           "splits": {"train": [[n, where.listed_digest(n)] for n in scan.files]}}
                view = ReferencedImages(listing, "train")
                view.where = where
                read_s = timed(lambda: view.take(np.arange(len(view))))
                seconds[readers] = (scan_s, read_s)
            for k, step in enumerate(("header scan (data_prep)", "read + decode (train, evaluate)")):
                one, many = seconds[1][k], seconds[threads][k]
                print(f"| {latency:g} ms | {step} | {one:.2f} | {many:.2f} | {one / many:.1f}x |")
            print(f"at {latency:g} ms, threads' header scan against local disk: {seconds[threads][0] / local:.1f}x the time")
            logged = wandb_references(uri, names, latency / 1000)
            print(f"at {latency:g} ms, W&B's add_reference of the {len(names)} objects: {logged:.2f} s "
                  f"({len(names) / logged:.0f} objects/s)")
        locations.READERS = threads


if __name__ == "__main__":
    main()
