"""data_prep's work: a source read, sampled, split and written as the dataset artifact's files,
before any run starts (bad data leaves no failed run behind).

A downloaded set (digits, MNIST, Fashion-MNIST, CIFAR-10) is small and loaded whole. An image
folder may be larger than memory: its headers are read, the split is chosen from the labels
alone (app/data/split.py's split_indices), then the images are decoded a shard at a time by a pool
of processes and written (app/data/split_files.py), so memory holds one shard whatever the folder's
size. The training split's statistics, the cross-split duplicates and the near-duplicate
signatures (app/data/near_duplicates.py; computed by the decoding processes) are gathered as the
shards pass, the same way for both. `--dedup near` needs the signatures before the split: a
folder is then decoded twice (once for the signatures alone, once to write), a set in memory once.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.data import image_files, memory, near_duplicates
from app.data.references import artifact_references
from app.data.split import SPLITS, Split, split_indices, stratified_split
from app.data.split_files import SplitWriter, read_split, shard_size_for, write_split
from app.errors import UserError
from app.progress import detail, progress

POOL_FROM = 2000  # images: below this, a pool's start costs more than it saves
GREY_MIX = 0.01  # a colour folder with this share of greyscale files or more trains on greyscale copies too


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
    near: near_duplicates.NearDuplicates | None = None  # None with --no-near-duplicates
    mixes_greyscale: bool = False  # a colour folder with GREY_MIX of greyscale files or more

    @property
    def augment(self) -> str:
        """train.py's default --augment for this split (app/training/augment.py): none for strokes on
        black (a shifted or mirrored digit is another digit, or none); crop-flip-grey for a colour
        folder that mixes in greyscale files (measured: docs/performance.md); else crop-flip."""
        if self.light_on_dark:
            return "none"
        return "crop-flip-grey" if self.mixes_greyscale else "crop-flip"


def prepare(args, name: str, fraction: float, sizes: tuple[int, int, int], folder: Path) -> PreparedSplit:
    """Read `args.dataset` as data_prep's flags say, split it and write it into `folder`."""
    if args.dataset == "imagefolder":
        return _prepare_folder(args, fraction, sizes, folder)
    from app.data.sources import load_dataset

    raw = load_dataset(args.dataset, args.data_dir or Path("data"), download=args.download,
                       image_size=args.image_size, strict=args.strict, dataset_name=name, resize=args.resize)
    removed = 0
    if args.dedup == "near":
        keep = _one_of_each_group(near_duplicates.signatures(raw.images), lambda rows: raw.images[rows])
        removed = int((~keep).sum())
        raw.images, raw.labels = raw.images[keep], raw.labels[keep]
    files, writer = write_split(stratified_split(raw, fraction, sizes, args.seed), folder, args.shard_size,
                                near=args.near_duplicates)
    return _prepared(files, folder, writer, source=raw.source, channels=raw.channels, resize=raw.resize,
                     light_on_dark=raw.light_on_dark, skipped=raw.skipped, near=writer.near(removed))


def _prepare_folder(args, fraction: float, sizes: tuple[int, int, int], folder: Path) -> PreparedSplit:
    from app.data.imagefolder import scan_image_folder
    from app.data.locations import location

    where = location(args.data_dir)  # a folder here, or s3:// / gs://
    scan = scan_image_folder(where, args.image_size, args.strict, args.resize)
    if args.reference and (odd := where.unreferenceable(scan.files)):
        raise UserError(f"{len(odd)} file name(s) in {where} hold '?' or '#', which W&B's {where.scheme}:// "
                        f"references cannot name ({', '.join(image_files.shown(n) for n in odd[:5])}"
                        f"{' and more' if len(odd) > 5 else ''}): rename them, or leave out --reference to copy the "
                        "images into the split.")
    workers = min(os.cpu_count() or 1, 8) if len(scan.files) >= POOL_FROM else 0
    # spawn, not fork: online, W&B's threads may already run in this process
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers else None
    try:
        return _write_folder(args, scan, where, fraction, sizes, folder, pool, workers)
    finally:
        if pool is not None:
            pool.terminate()


def _write_folder(args, scan, where, fraction, sizes, folder: Path, pool, workers: int) -> PreparedSplit:
    from app.data.imagefolder import decode

    removed = 0
    if args.dedup == "near":
        removed = _drop_near_copies(scan, pool, workers)
    chosen = split_indices(scan.labels, scan.class_names, fraction, sizes, args.seed)
    total = sum(len(chosen[s]) for s in SPLITS)
    memory.check_fits(total, scan.sample_shape, refuse=False)
    image_bytes = int(np.prod(scan.sample_shape))
    if not args.reference:
        memory.check_disk(total * image_bytes, folder, f"{total} images of {'x'.join(map(str, scan.sample_shape))}")

    shard_size = shard_size_for(scan.sample_shape, args.shard_size)
    writer = SplitWriter(folder, scan.class_names, shard_size,
                         sharded=not args.reference and any(len(chosen[s]) > shard_size for s in SPLITS),
                         reference=(where, scan.channels, scan.size, scan.resize) if args.reference else None,
                         near=args.near_duplicates)
    chunks = [(s, chosen[s][start:start + shard_size]) for s in SPLITS for start in range(0, len(chosen[s]), shard_size)]
    written: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}  # each split's images, as the scan's rows
    for s, indices in progress(chunks, len(chunks), f"decoding {total} images from {where}"
                               f"{f' in {workers} processes' if workers else ''}", unit="shards" if writer.sharded else "parts"):
        images, keep, digests, signed = decode(scan, indices, pool, digests=args.reference,
                                               signatures=args.near_duplicates)
        written[s].append(indices[keep])
        sources = [[scan.files[i], digest]
                   for i, digest, kept in zip(indices.tolist(), digests, keep.tolist()) if kept] \
            if args.reference else None
        writer.add(s, images[keep] if not keep.all() else images, scan.labels[indices][keep], sources,
                   signatures=signed[keep] if signed is not None else None)
    scan.warn_skipped(args.strict)
    report_crop(scan)
    rows = {s: np.concatenate(parts) if parts else np.zeros(0, np.int64) for s, parts in written.items()}

    def signed_images(name: str, positions: np.ndarray) -> np.ndarray:  # decoded again: the split holds another fit
        return decode(scan, rows[name][positions], pool, rule=scan.signed_rule)[0]

    return _prepared(writer.close(), folder, writer,
                     near_images=signed_images if scan.signed_rule != scan.resize else None,
                     source=f"image folder {where if where.remote else where.name}",
                     channels=scan.channels,
                     resize=image_files.RESIZE_RULES[scan.resize] if scan.resized else None, light_on_dark=False,
                     skipped=scan.skipped,
                     references=artifact_references(where, writer.sources) if args.reference else {},
                     near=writer.near(removed),
                     mixes_greyscale=scan.channels == 3 and sum(scan.greyscale) >= GREY_MIX * len(scan.files))


CUT_NOTED = 0.25  # data_prep notes the images crop cuts more than this share off


def report_crop(scan) -> None:
    """What --resize crop cut off: a note when it cut more than a quarter off an image (the ends of a
    long image), which the default, trim, cuts less of and pad keeps (measured on two colour sets:
    docs/performance.md)."""
    if scan.resize != "crop" or not scan.crop_cuts:
        return
    cut = [c for c in scan.crop_cuts if c > CUT_NOTED]
    if cut:
        print(f"note: --resize crop cut more than a quarter off {len(cut):,} of the {len(scan.crop_cuts):,} images "
              f"({len(cut) / len(scan.crop_cuts):.0%}; up to {max(cut):.0%} of one): the ends of long images. If what "
              "tells the classes apart may lie near an end (an object off centre), the default --resize trim cuts "
              "less and --resize pad keeps every image whole, at less detail (measured: objects anywhere in long "
              "images 0.93 with crop, 0.96 with trim, 0.95 with pad; textures filling them 0.99, 0.98, 0.93; "
              "docs/performance.md, How other sizes are fitted).", file=sys.stderr)


def _prepared(files, folder, writer: SplitWriter, near: near_duplicates.NearDuplicates | None,
              near_images=None, **described) -> PreparedSplit:
    """The split written into `folder`, described; `near` checked on `near_images(split, positions)`,
    the images its signatures were taken of when the split holds another fit (else the split's own)."""
    mean, std = writer.stats.result()
    split = read_split(folder, mapped=True, check_sources=False)
    if near is not None:
        def images(name: str, positions: np.ndarray) -> np.ndarray:
            return split.images[name][positions]

        near = near.checked(near_images or images, {name: len(split.images[name]) for name in split.images})
    return PreparedSplit(files=files, split=split, mean=mean, std=std, duplicates=writer.duplicates.duplicates,
                         shard_size=writer.shard_size if writer.sharded else None, near=near, **described)


def _one_of_each_group(signature: np.ndarray, images) -> np.ndarray:
    """Keep the first image of each group of near-copies; `images(rows)`: the rows' uint8 images, for
    the second look."""
    first, second, _ = near_duplicates.near_pairs(signature)
    first, second = near_duplicates.looked_again(first, second, images, len(signature))
    return near_duplicates.keep_one_per_group(len(signature), first, second)


def _drop_near_copies(scan, pool, workers: int) -> int:
    """--dedup near on a folder: every readable image's signature (decoded chunk by chunk, pixels not
    kept), then all but the first of each group of near-copies left out of the scan before the split."""
    from app.data.imagefolder import decode

    chunk = 4096
    signature, decoded = [], []
    for start in progress(range(0, len(scan.files), chunk), -(-len(scan.files) // chunk),
                          f"near-duplicate signatures of {len(scan.files)} images (--dedup near)"
                          f"{f' in {workers} processes' if workers else ''}", unit="parts"):
        indices = np.arange(start, min(start + chunk, len(scan.files)))
        _, keep, _, signed = decode(scan, indices, pool, signatures=True)
        signature.append(signed[keep])
        decoded.append(indices[keep])
    positions = np.concatenate(decoded)

    def images(rows: np.ndarray) -> np.ndarray:  # decoded again (the first pass kept no pixels), as signed
        return decode(scan, positions[rows], pool, rule=scan.signed_rule)[0]

    keep = _one_of_each_group(np.concatenate(signature), images)
    scan.keep_only(positions[keep])
    return int((~keep).sum())


def report_duplicates(prepared: PreparedSplit) -> None:
    if prepared.duplicates:
        print(f"warning: {prepared.duplicates} image(s) in val/test also appear in an earlier split.", file=sys.stderr)
    near = prepared.near
    if near is None:
        return
    if near.unconfirmed:
        detail(f"near-duplicates: {near.unconfirmed} pair(s) within the signature's threshold are look-alikes at a "
               f"second look (the two images correlate under {near.second_look}), not counted")
    if near.removed:
        print(f"--dedup near: {near.removed} near-copies left out before the split (one image of each group kept).",
              file=sys.stderr)
    test = near.self_test
    if test.get("copies_found") is not None and test["copies_found"] < near_duplicates.FINDS_COPIES:
        print(f"note: on this data the near-duplicate check finds {test['copies_found']:.0%} of near-copies made of "
              f"{test['images']} of its images (the rest lie beyond its threshold, {near.threshold}): copies across "
              "the splits may go unseen (docs/performance.md, Near-duplicates).", file=sys.stderr)
    leaking = {pair: near.across(*pair) for pair in (("train", "test"), ("train", "val"))}
    if not any(leaking.values()):
        return
    pairs = f"{leaking[('train', 'test')]} train/test pair(s), {leaking[('train', 'val')]} train/val pair(s)"
    share, high = test.get("copies_share"), test.get("copies_share_high")
    measured = "" if share is None else (
        f"near-copies made of {test['images']} of its images lie within {test['copy_distance']:.2f} of them "
        f"(median), and an estimated {share:.0%} of the pairs found are copies by that measure (at most "
        f"{high:.0%}, {near_duplicates.CONFIDENCE:.0%} confidence)")
    if high is not None and high < near_duplicates.MOSTLY_COPIES:  # look-alikes even at the estimate's high end
        print(f"note: {pairs} within the near-duplicate threshold, but on this data they are mostly look-alikes, not "
              f"copies: {measured} (docs/performance.md, Near-duplicates). The near_duplicates table shows them; "
              "--dedup near would leave out the look-alikes too.", file=sys.stderr)
        return
    print(f"warning: near-copies straddle the splits: {pairs} (resized, re-encoded or cropped copies; the "
          "near_duplicates table shows them): test accuracy may be inflated. --dedup near keeps one image of "
          f"each group before the split.{f' On this data {measured}.' if measured else ''}", file=sys.stderr)
