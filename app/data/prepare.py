"""data_prep's work: a source read, sampled, split and written as the dataset artifact's files,
before any run starts (bad data leaves no failed run behind).

A downloaded set (digits, MNIST, Fashion-MNIST, CIFAR-10) is small and loaded whole. An image
folder may be larger than memory: its headers are read, the split is chosen from the labels
alone (app/data/split.py's split_indices), then the images are decoded a shard at a time by a pool
of processes and written (app/data/split_files.py), so memory holds one shard whatever the folder's
size. The training split's statistics and the cross-split duplicates are counted as the shards
pass, the same way for both.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.data import image_files, memory
from app.data.references import artifact_references
from app.data.split import SPLITS, Split, split_indices, stratified_split
from app.data.split_files import SplitWriter, read_split, shard_size_for, write_split
from app.errors import UserError
from app.progress import progress

POOL_FROM = 2000  # images: below this, a pool's start costs more than it saves


@dataclass
class PreparedSplit:
    files: dict[str, Path]  # name inside the artifact -> path
    split: Split  # the written split, read back by ShardedImages (nothing held in memory)
    mean: list[float]
    std: list[float]
    duplicates: int
    source: str
    channels: int
    resize: str | None
    light_on_dark: bool
    shard_size: int | None  # images per shard when the split was sharded
    skipped: list[dict] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)  # --reference: name in the artifact -> URI


def prepare(args, name: str, fraction: float, sizes: tuple[int, int, int], folder: Path) -> PreparedSplit:
    """Read `args.dataset` as data_prep's flags say, split it and write it into `folder`."""
    if args.dataset == "imagefolder":
        return _prepare_folder(args, fraction, sizes, folder)
    from app.data.sources import load_dataset

    raw = load_dataset(args.dataset, args.data_dir or Path("data"), download=args.download,
                       image_size=args.image_size, strict=args.strict, dataset_name=name)
    files, writer = write_split(stratified_split(raw, fraction, sizes, args.seed), folder, args.shard_size)
    return _prepared(files, folder, writer, source=raw.source, channels=raw.channels, resize=raw.resize,
                     light_on_dark=raw.light_on_dark, skipped=raw.skipped)


def _prepare_folder(args, fraction: float, sizes: tuple[int, int, int], folder: Path) -> PreparedSplit:
    from app.data.imagefolder import decode, scan_image_folder
    from app.data.locations import location

    where = location(args.data_dir)  # a folder here, or s3:// / gs://
    scan = scan_image_folder(where, args.image_size, args.strict)
    if args.reference and (odd := where.unreferenceable(scan.files)):
        raise UserError(f"{len(odd)} file name(s) in {where} hold '?' or '#', which W&B's {where.scheme}:// "
                        f"references cannot name ({', '.join(image_files.shown(n) for n in odd[:5])}"
                        f"{' and more' if len(odd) > 5 else ''}): rename them, or leave out --reference to copy the "
                        "images into the split.")
    chosen = split_indices(scan.labels, scan.class_names, fraction, sizes, args.seed)
    total = sum(len(chosen[s]) for s in SPLITS)
    memory.check_fits(total, scan.sample_shape, refuse=False)
    image_bytes = int(np.prod(scan.sample_shape))
    if not args.reference:
        memory.check_disk(total * image_bytes, folder, f"{total} images of {'x'.join(map(str, scan.sample_shape))}")

    shard_size = shard_size_for(scan.sample_shape, args.shard_size)
    writer = SplitWriter(folder, scan.class_names, shard_size,
                         sharded=not args.reference and any(len(chosen[s]) > shard_size for s in SPLITS),
                         reference=(where, scan.channels, scan.size) if args.reference else None)
    chunks = [(s, chosen[s][start:start + shard_size]) for s in SPLITS for start in range(0, len(chosen[s]), shard_size)]
    workers = min(os.cpu_count() or 1, 8) if total >= POOL_FROM else 0
    # spawn, not fork: online, W&B's threads may already run in this process
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers else None
    try:
        for s, indices in progress(chunks, len(chunks), f"decoding {total} images from {where}"
                                   f"{f' in {workers} processes' if workers else ''}", unit="shards" if writer.sharded else "parts"):
            images, keep, digests = decode(scan, indices, pool, digests=args.reference)
            sources = [[scan.files[i], digest]
                       for i, digest, kept in zip(indices.tolist(), digests, keep.tolist()) if kept] \
                if args.reference else None
            writer.add(s, images[keep] if not keep.all() else images, scan.labels[indices][keep], sources)
    finally:
        if pool is not None:
            pool.terminate()
    scan.warn_skipped(args.strict)
    return _prepared(writer.close(), folder, writer, source=f"image folder {where if where.remote else where.name}",
                     channels=scan.channels,
                     resize=image_files.RESIZE_RULE if scan.resized else None, light_on_dark=False,
                     skipped=scan.skipped,
                     references=artifact_references(where, writer.sources) if args.reference else {})


def _prepared(files, folder, writer: SplitWriter, **described) -> PreparedSplit:
    mean, std = writer.stats.result()
    return PreparedSplit(files=files, split=read_split(folder, mapped=True, check_sources=False), mean=mean, std=std,
                         duplicates=writer.duplicates.duplicates,
                         shard_size=writer.shard_size if writer.sharded else None, **described)


def report_duplicates(prepared: PreparedSplit) -> None:
    if prepared.duplicates:
        print(f"warning: {prepared.duplicates} image(s) in val/test also appear in an earlier split.", file=sys.stderr)
