"""A split on disk, written byte-for-byte reproducibly, so the same split gives the same W&B digest
and no new artifact version (np.save is deterministic; np.savez is not: its zip entries carry the
current time).

Two layouts, both plain .npy files of uint8 images that numpy reads by itself:
- one file per split: `{split}_images.npy`, `{split}_labels.npy`, `classes.json`: every split
  that fits in one shard (SHARD_BYTES, or --shard-size images), as earlier versions wrote it;
- shards, when a split is larger: `{split}_images_{k:05d}.npy` of `shard_size` images each (the
  last one shorter), the same labels files, and `shards.json` listing each split's shards and
  their image counts. Shards are .npy rather than tar (WebDataset) or encoded images: training
  reads them in the engine's own shuffled order by positioned reads (app/data/shards.py), which a
  sequential tar cannot give without a shuffle buffer, and nothing is decoded twice per epoch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from app.data import near_duplicates, references
from app.data.preprocessing import ChannelStats
from app.data.shards import ShardedImages
from app.data.split import SPLITS, DuplicateCounter, Split
from app.errors import UserError

CLASSES_FILE = "classes.json"
SHARDS_FILE = "shards.json"
SHARD_BYTES = 256 * 2**20  # images per shard by default: as many as fit in 256 MiB


def shard_size_for(sample_shape: tuple[int, ...], requested: int | None = None) -> int:
    """Images per shard: `requested` (--shard-size), else as many as fit in SHARD_BYTES."""
    return requested or max(1, SHARD_BYTES // math.prod(sample_shape))


class SplitWriter:
    """Writes a split into `folder` chunk by chunk (each chunk at most `shard_size` images, one
    shard each when `sharded`), counting as it goes what data_prep records: the training split's
    channel statistics, the images of val/test that repeat an earlier split and, with `near`, each
    image's near-duplicate signature (app/data/near_duplicates.py). With `reference`
    (the image folder, data_prep --reference) no image is written: each chunk's source files and
    their digests (as W&B records them) go to references.json instead."""

    def __init__(self, folder: Path, class_names: list[str], shard_size: int, sharded: bool,
                 reference: tuple | None = None, near: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.class_names, self.shard_size, self.sharded = folder, class_names, shard_size, sharded
        self.reference = reference  # (the folder: app/data/locations.py, channels, size)
        self.sources: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
        self.shards: dict[str, list[dict]] = {s: [] for s in SPLITS}
        self.labels: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
        self.stats, self.duplicates = ChannelStats(), DuplicateCounter()
        self.signatures: dict[str, list[np.ndarray]] | None = {s: [] for s in SPLITS} if near else None

    def add(self, split: str, images: np.ndarray, labels: np.ndarray, sources: list[list[str]] | None = None,
            signatures: np.ndarray | None = None) -> None:
        """`sources`: with `reference`, each image's [file relative to the folder, digest];
        `signatures`: the images' near-duplicate signatures when the decoding pool computed them."""
        if len(images) > self.shard_size or (self.shards[split] and not self.sharded):
            raise ValueError("a chunk must fit one shard; a split without shards takes one chunk")
        if split == "train":
            self.stats.add(images)
        self.duplicates.add(split, images)
        if self.signatures is not None:
            self.signatures[split].append(near_duplicates.signatures(images) if signatures is None else signatures)
        self.labels[split].append(np.asarray(labels, dtype=np.int64))
        if self.reference is not None:
            self.sources[split] += sources
            return
        k = len(self.shards[split])
        name = f"{split}_images_{k:05d}.npy" if self.sharded else f"{split}_images.npy"
        np.save(self.folder / name, np.ascontiguousarray(images), allow_pickle=False)
        self.shards[split].append({"file": name, "images": int(len(images))})

    def near(self, removed: int = 0) -> near_duplicates.NearDuplicates | None:
        """The near pairs within and across the splits written (None when not asked for)."""
        if self.signatures is None:
            return None
        return near_duplicates.NearDuplicates.of_splits(
            {s: np.concatenate(chunks) if chunks else np.zeros((0, near_duplicates.DIMENSIONS), np.float32)
             for s, chunks in self.signatures.items()}, removed=removed)

    def close(self) -> dict[str, Path]:
        """The labels, classes and shard list written; returns {name inside the artifact: path}."""
        files = {}
        if self.reference is not None:
            root, channels, size, rule = self.reference
            files[references.REFERENCES_FILE] = references.write_references(self.folder, root, channels, size, rule,
                                                                            self.sources)
        for s in SPLITS:
            if not self.labels[s] or not sum(len(chunk) for chunk in self.labels[s]):
                raise UserError(f"no image of the {s} split could be read; see the files listed above.")
            for entry in self.shards[s]:
                files[entry["file"]] = self.folder / entry["file"]
            path = self.folder / f"{s}_labels.npy"
            np.save(path, np.concatenate(self.labels[s]), allow_pickle=False)
            files[path.name] = path
        (self.folder / CLASSES_FILE).write_text(json.dumps(self.class_names), encoding="utf-8")
        files[CLASSES_FILE] = self.folder / CLASSES_FILE
        if self.sharded:
            (self.folder / SHARDS_FILE).write_text(json.dumps(
                {"shard_size": self.shard_size, "splits": self.shards}, indent=1, sort_keys=True), encoding="utf-8")
            files[SHARDS_FILE] = self.folder / SHARDS_FILE
        return files


def write_split(split: Split, folder: Path, shard_size: int | None = None,
                near: bool = True) -> tuple[dict[str, Path], SplitWriter]:
    """Write an in-memory split (shards when a split holds more than a shard); returns
    ({name inside the artifact: path}, the writer with its statistics)."""
    size = shard_size_for(split.images["train"].shape[1:], shard_size)
    writer = SplitWriter(folder, split.class_names, size, sharded=any(len(split.labels[s]) > size for s in SPLITS),
                         near=near)
    for s in SPLITS:
        for start in range(0, len(split.labels[s]), size):
            writer.add(s, split.images[s][start:start + size], split.labels[s][start:start + size])
    return writer.close(), writer


def referenced(folder: Path) -> bool:
    return (folder / references.REFERENCES_FILE).is_file()


def image_files(folder: Path, split: str) -> list[Path]:
    """The files holding a split's images, in order: its shards, or its one file."""
    listing = folder / SHARDS_FILE
    if not listing.is_file():
        return [folder / f"{split}_images.npy"]
    try:
        entries = json.loads(listing.read_text(encoding="utf-8"))["splits"][split]
        return [folder / entry["file"] for entry in entries]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{SHARDS_FILE} in {folder} cannot be read ({err}); log the split again.") from err


def read_split(folder: Path, mapped: bool = False, check_sources: bool = True, ref: str | None = None) -> Split:
    """Read a split written by SplitWriter; a wrong or damaged folder is a clear error that names
    the file (and the version, `ref`, when given). `mapped`: the images as app/data/shards.ShardedImages, read from disk only where they
    are used (a split may exceed memory); otherwise held in memory as one array. A split of
    references (data_prep --reference) has its source images checked first, unless not `check_sources`."""
    listed = [f"{s}_labels.npy" for s in SPLITS] + [CLASSES_FILE]
    of_references = referenced(folder)
    stored = {} if of_references else {s: image_files(folder, s) for s in SPLITS}
    missing = [n for n in listed if not (folder / n).is_file()] + \
              [f.name for files in stored.values() for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{folder} is not a dataset split (missing {', '.join(missing)}); pass a `<dataset>-split` ref.")
    try:
        labels = {s: np.load(folder / f"{s}_labels.npy", allow_pickle=False) for s in SPLITS}
        names = json.loads((folder / CLASSES_FILE).read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise UserError(f"the dataset files in {folder} cannot be read ({err}); log the split again.") from err
    check_labels(labels, names, ref or str(folder))
    images = {}
    listing = references.read_references(folder) if of_references else None
    if listing is not None and check_sources:
        references.check_sources(listing)  # a changed source image is named before anything reads it
    for s in SPLITS:
        view = references.ReferencedImages(listing, s) if listing else ShardedImages(stored[s])
        if len(view) != len(labels[s]):
            raise UserError(f"the {s} split in {folder} holds {len(view)} images for {len(labels[s])} labels; "
                            "log the split again.")
        images[s] = view if mapped else view[:]
    return Split(images=images, labels=labels, class_names=names)


def check_labels(labels: dict[str, np.ndarray], class_names: list, where: str) -> None:
    """Every label an index into the class names: a version whose labels say 99 or -1 (written by
    hand, or by another tool) is named with those labels here, not as an IndexError mid-training."""
    if not isinstance(class_names, list) or not class_names:
        raise UserError(f"{where} has no class names ({CLASSES_FILE}); log the split again with data_prep.py.")
    for s, values in labels.items():
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise UserError(f"{where}: the {s} labels are not one integer class index per image "
                            f"(shape {values.shape}, {values.dtype}); log the split again with data_prep.py.")
        bad = np.unique(values[(values < 0) | (values >= len(class_names))])
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:10]) + (f" and {bad.size - 10} more" if bad.size > 10 else "")
            raise UserError(f"{where}: the {s} labels hold {shown}, outside the {len(class_names)} classes "
                            f"(0 to {len(class_names) - 1}); log the split again with data_prep.py, which "
                            "numbers the classes itself.")
