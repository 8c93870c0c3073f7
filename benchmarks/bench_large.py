"""A folder larger than comfortable: data_prep, one streamed training epoch and evaluate on a
generated folder of colour JPEGs (default 200,000 at 64x64), each stage's peak memory measured.

    python benchmarks/bench_large.py                      # 200,000 images (about an hour on 2 cores)
    python benchmarks/bench_large.py --images 20000       # a quicker look

Each stage runs as a user runs it (the real scripts, offline, in a workspace under --workdir). Its
memory is sampled every 0.2 s over the whole process tree (the script, its DataLoader or decoding
processes, W&B's service): the peak of the tree's summed PSS (each shared page counted once, in
shares) and the highest single process's peak RSS (VmHWM). The generated folder is kept in
--workdir and reused by later runs of the same size.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from offline_runs import offline_env

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "app" / "pipelines"
CLASSES = 10
GIB = 2**30


def write_images(task) -> None:
    """One process's share of the folder: class c is a colour (its hue) with stripes of c's
    orientation, on noise; JPEG quality 90."""
    from PIL import Image

    root, start, stop, size, seed = task
    rng = np.random.default_rng(seed + start)
    ramp = np.arange(size)
    for i in range(start, stop):
        label = i % CLASSES
        pixels = rng.integers(0, 90, (size, size, 3)).astype(np.int16)
        pixels[..., label % 3] += 100
        stripes = ((ramp[:, None] if label < 5 else ramp[None, :]) // (2 + label % 5)) % 2
        pixels += (stripes * 60)[..., None].astype(np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / f"class_{label}" / f"{i:07d}.jpg", quality=90)


def make_folder(root: Path, images: int, size: int) -> float:
    """The generated folder (reused when a complete one of this size is there); returns seconds."""
    marker = root / ".complete"
    if marker.is_file() and marker.read_text() == f"{images} {size}":
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True)
    started = time.perf_counter()
    step = 2000
    tasks = [(root, s, min(s + step, images), size, 0) for s in range(0, images, step)]
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        for done, _ in enumerate(pool.imap_unordered(write_images, tasks), 1):
            if done % 10 == 0 or done == len(tasks):
                print(f"generating {images:,} images: {min(done * step, images):,}", file=sys.stderr)
    marker.write_text(f"{images} {size}")
    return time.perf_counter() - started


def tree(root_pid: int) -> list[int]:
    """root_pid and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def kib(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """The peak of the process tree's summed PSS, and the highest VmHWM of any process in it."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_pss, self.peak_rss, self.done = pid, 0, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = tree(self.pid)
            self.peak_pss = max(self.peak_pss, sum(kib(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids))
            self.peak_rss = max([self.peak_rss] + [kib(Path(f"/proc/{p}/status"), "VmHWM") for p in pids])
            self.done.wait(0.2)


def stage(name: str, workspace: Path, script: str, *args: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / f"{script}.py"), *args], cwd=workspace,
                            env=offline_env(workspace, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    sampler.done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{out}\n{err[-4000:]}")
    print(f"{name}: {seconds:.0f} s, peak PSS of its processes {sampler.peak_pss / GIB:.2f} GiB, "
          f"largest process peak RSS {sampler.peak_rss / GIB:.2f} GiB", file=sys.stderr)
    return {"stage": name, "seconds": seconds, "pss": sampler.peak_pss, "rss": sampler.peak_rss, "out": out}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bench_large")
    p.add_argument("--workers", type=int, default=1, help="train.py --stream's DataLoader workers")
    p.add_argument("--width", type=int, default=8, help="the convnet's width (the data path is what is measured)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--shard-size", type=int, default=None, help="data_prep's --shard-size (default: its own, 256 MiB)")
    p.add_argument("--reference", action="store_true",
                   help="data_prep --reference: the split points at the JPEGs, decoded where they are read")
    args = p.parse_args(argv)

    folder = args.workdir / f"folder-{args.images}-{args.size}"
    generated = make_folder(folder, args.images, args.size)
    workspace = args.workdir / "workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    folder_bytes = args.images * args.size * args.size * 3
    print(f"{args.images:,} JPEGs of {args.size}x{args.size} colour ({sum(f.stat().st_size for f in folder.rglob('*.jpg')) / GIB:.2f} GiB "
          f"as files, {folder_bytes / GIB:.2f} GiB as uint8){f'; generated in {generated:.0f} s' if generated else ''}")

    results = [
        stage("data_prep", workspace, "data_prep", "--dataset", "imagefolder", "--data-dir", str(folder), "--name", "big",
              *(["--shard-size", str(args.shard_size)] if args.shard_size else []),
              *(["--reference"] if args.reference else [])),
        stage("train (1 epoch, --stream)", workspace, "train", "--dataset", "big", "--epochs", "1", "--stream",
              str(args.workers), "--width", str(args.width), "--batch_size", str(args.batch_size),
              "--checkpoint-every", "0"),
        stage("evaluate", workspace, "evaluate", "--model", "big-convnet:v0", "--no-generate-images"),
    ]
    counts = {"data_prep": args.images, "train (1 epoch, --stream)": int(args.images * 0.9),  # train + val
              "evaluate": int(args.images * 0.3)}  # val + test
    print("\n| stage | seconds | images/s | peak PSS, all its processes | largest process's peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['stage']} | {r['seconds']:.0f} | {counts[r['stage']] / r['seconds']:,.0f} | "
              f"{r['pss'] / GIB:.2f} GiB | {r['rss'] / GIB:.2f} GiB |")
    worst = max(max(r["pss"], r["rss"]) for r in results)
    print(f"\npeak memory of any stage: {worst / GIB:.2f} GiB ({'below' if worst < 3 * GIB else 'ABOVE'} 3 GiB)")
    shards = sorted((workspace / "artifact-store" / "objects").glob("*/train_images_*.npy"))
    print(f"training split: {'references to the JPEGs' if args.reference else f'{len(shards)} shard file(s)'}")
    for r in results:
        tail = [line for line in r["out"].splitlines() if line.strip()][-3:]
        print(f"{r['stage']}: " + " / ".join(tail))


if __name__ == "__main__":
    main()
