"""A split whose images stay where they are (data_prep --reference): the artifact holds the labels,
the class names and `references.json` (the folder, and each split's files with the MD5 W&B's
manifests record), plus one W&B reference entry per image (`Artifact.add_reference(uri,
checksum=True)`), so W&B knows every source file's checksum and a changed folder is a new version.

When the split is used, every source file is checked against its MD5 first (as W&B's own download
of a file:// reference checks it): a changed or missing image is named before anything trains.
The images are decoded and fitted to the recorded size where they are read: in DataLoader workers
with --stream, else once into memory.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np

from app.data import image_files
from app.data.shards import ImagesView
from app.errors import UserError, summary
from app.progress import progress

REFERENCES_FILE = "references.json"
IMAGES_PREFIX = "images/"  # the reference entries' names inside the artifact


def md5_b64(path: Path) -> str:
    """What W&B's manifests record for a file: the base64 of its MD5."""
    digest = hashlib.md5(usedforsecurity=False)  # W&B's content digest
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


def write_references(folder: Path, root: Path, channels: int, size: tuple[int, int],
                     entries: dict[str, list[list[str]]]) -> Path:
    """references.json: the folder, how its images are fitted, and each split's [file, MD5] in order."""
    path = folder / REFERENCES_FILE
    path.write_text(json.dumps({"root": str(root.resolve()), "channels": channels, "size": list(size),
                                "splits": entries}, indent=0, sort_keys=True), encoding="utf-8")
    return path


def read_references(folder: Path) -> dict:
    try:
        listing = json.loads((folder / REFERENCES_FILE).read_text(encoding="utf-8"))
        listing["root"], listing["splits"]  # noqa: B018 (the keys every reader needs)
        return listing
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise UserError(f"{REFERENCES_FILE} in {folder} cannot be read ({err}); log the split again.") from err


def artifact_references(root: Path, entries: dict[str, list[list[str]]]) -> dict[str, str]:
    """{name inside the artifact: file:// URI} of every referenced image (each split's [file, MD5])."""
    root = root.resolve()
    return {IMAGES_PREFIX + name: (root / name).as_uri() for split in entries.values() for name, _ in split}


def check_sources(listing: dict) -> None:
    """Every referenced image still there with the MD5 it was logged with; otherwise a UserError
    that names the changed and missing files."""
    root = Path(listing["root"])
    entries = [entry for split in listing["splits"].values() for entry in split]
    changed, missing = [], []
    for name, digest in progress(entries, len(entries), f"checking the split's source images in {root}", "files"):
        try:
            if md5_b64(root / name) != digest:
                changed.append(name)
        except OSError:
            missing.append(name)
    if changed or missing:
        def listed(names):
            return ", ".join(image_files.shown(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts = ([f"{len(changed)} changed since the split was logged ({listed(changed)})"] if changed else []) + \
                ([f"{len(missing)} missing ({listed(missing)})"] if missing else [])
        raise UserError(f"the split's source images in {root}: {'; '.join(parts)}. Restore them, or log the "
                        "split again (data_prep.py --reference) and train on the new version.")


class ReferencedImages(ImagesView):
    """A split's referenced image files, decoded and fitted (the recorded channels and size) as
    they are read. Pickles as its file list, so DataLoader workers decode in their own process."""

    def __init__(self, listing: dict, split: str):
        self.root = Path(listing["root"])
        self.names = [name for name, _ in listing["splits"][split]]
        self.channels, self.size = int(listing["channels"]), tuple(listing["size"])
        self.sample_shape = (*self.size, 3) if self.channels == 3 else self.size

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.take(np.arange(start, stop))

    def take(self, index) -> np.ndarray:
        index = self.check_index(index)
        out = np.empty((len(index), *self.sample_shape), np.uint8)
        for i, k in enumerate(index.tolist()):
            path = self.root / self.names[k]
            try:
                out[i] = image_files.read_image(path, self.channels, self.size)
            except (OSError, ValueError) as err:
                raise UserError(f"{image_files.shown(str(path))}, an image of the split, cannot be read now "
                                f"({summary(err)}); restore it, or log the split again.") from err
        return out

