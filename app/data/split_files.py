"""A split on disk: one .npy per array plus classes.json, written byte-for-byte reproducibly.

np.save is deterministic (np.savez is not: its zip entries carry the current time), so the
same split gives the same W&B digest and no new artifact version.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.data.split import SPLITS, Split
from app.errors import UserError

CLASSES_FILE = "classes.json"


def split_file_names() -> list[str]:
    return [f"{s}_{kind}.npy" for s in SPLITS for kind in ("images", "labels")] + [CLASSES_FILE]


def write_split(split: Split, folder: Path) -> dict[str, Path]:
    """Write the split; returns {name inside the artifact: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for s in SPLITS:
        for kind, array in (("images", split.images[s]), ("labels", split.labels[s])):
            path = folder / f"{s}_{kind}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            files[path.name] = path
    classes = folder / CLASSES_FILE
    classes.write_text(json.dumps(split.class_names), encoding="utf-8")
    files[CLASSES_FILE] = classes
    return files


def images_file(folder: Path, split: str) -> Path:
    return folder / f"{split}_images.npy"


def read_split(folder: Path, mapped: bool = False) -> Split:
    """Read a split written by write_split; a wrong or damaged folder is a clear error. `mapped`:
    the images by memory map, read from disk only where they are used."""
    missing = [n for n in split_file_names() if not (folder / n).is_file()]
    if missing:
        raise UserError(f"{folder} is not a dataset split (missing {', '.join(missing)}); pass a `<dataset>-split` ref.")
    try:
        images = {s: np.load(images_file(folder, s), mmap_mode="r" if mapped else None, allow_pickle=False)
                  for s in SPLITS}
        labels = {s: np.load(folder / f"{s}_labels.npy", allow_pickle=False) for s in SPLITS}
        names = json.loads((folder / CLASSES_FILE).read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise UserError(f"the dataset files in {folder} cannot be read ({err}); log the split again.") from err
    return Split(images=images, labels=labels, class_names=names)
