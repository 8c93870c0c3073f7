"""A split whose images stay where they are (data_prep --reference): the artifact holds the labels,
the class names and `references.json` (the folder, and each split's files with the digest W&B's
manifests record), plus one W&B reference entry per image (`Artifact.add_reference(uri,
checksum=True)`), so W&B knows every source file's checksum and a changed folder is a new version.
The folder is on this machine (file://) or in a bucket (s3://, gs://: app/data/locations.py).

When the split is used, every source file is checked against its digest first (as W&B's own
download of a reference checks it): a changed or missing image is named before anything trains.
The images are decoded and fitted to the recorded size where they are read: in DataLoader workers
with --stream, else once into memory.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.data import image_files
from app.data.locations import BucketPrefix, LocalFolder, SourceChanged, location
from app.data.shards import ImagesView
from app.errors import UserError, summary
from app.progress import progress

REFERENCES_FILE = "references.json"
IMAGES_PREFIX = "images/"  # the reference entries' names inside the artifact


def write_references(folder: Path, where: LocalFolder | BucketPrefix, channels: int, size: tuple[int, int],
                     rule: str, entries: dict[str, list[list[str]]]) -> Path:
    """references.json: the folder, how its images are fitted (channels, size, the resize rule), and
    each split's [file, digest] in order."""
    path = folder / REFERENCES_FILE
    path.write_text(json.dumps({"root": where.recorded, "channels": channels, "size": list(size), "resize": rule,
                                "splits": entries}, indent=0, sort_keys=True), encoding="utf-8")
    return path


def read_references(folder: Path) -> dict:
    try:
        listing = json.loads((folder / REFERENCES_FILE).read_text(encoding="utf-8"))
        listing["root"], listing["splits"]  # noqa: B018 (the keys every reader needs)
        return listing
    except (ValueError, KeyError, TypeError, OSError) as err:
        raise UserError(f"{REFERENCES_FILE} in {folder} cannot be read ({err}); log the split again.") from err


def artifact_references(where: LocalFolder | BucketPrefix, entries: dict[str, list[list[str]]]) -> dict[str, str]:
    """{name inside the artifact: URI} of every referenced image (each split's [file, digest])."""
    return {IMAGES_PREFIX + name: where.file_uri(name) for split in entries.values() for name, _ in split}


def check_sources(listing: dict) -> None:
    """Every referenced image still there with the digest it was logged with; otherwise a UserError
    that names the changed and missing files."""
    where = location(listing["root"])
    entries = [entry for split in listing["splits"].values() for entry in split]
    names = progress([name for name, _ in entries], len(entries),
                     f"checking the split's source images in {where}", "files")
    now = where.digests(names)
    changed = [name for name, digest in entries if now[name] is not None and now[name] != digest]
    missing = [name for name, _ in entries if now[name] is None]
    if changed or missing:
        def listed(names):
            return ", ".join(image_files.shown(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        parts = ([f"{len(changed)} changed since the split was logged ({listed(changed)})"] if changed else []) + \
                ([f"{len(missing)} missing ({listed(missing)})"] if missing else [])
        raise UserError(f"the split's source images in {where}: {'; '.join(parts)}. Restore them, or log the "
                        "split again (data_prep.py --reference) and train on the new version.")


class ReferencedImages(ImagesView):
    """A split's referenced image files, decoded and fitted (the recorded channels and size) as
    they are read. Pickles as its file list, so DataLoader workers decode in their own process
    (and open their own bucket client)."""

    decodes = True

    def __init__(self, listing: dict, split: str):
        self.where = location(listing["root"])
        self.names = [name for name, _ in listing["splits"][split]]
        self.digests = [digest for _, digest in listing["splits"][split]]
        self.channels, self.size = int(listing["channels"]), tuple(listing["size"])
        self.rule = image_files.resize_rule(listing.get("resize"))  # a listing from before --resize: crop
        self.sample_shape = (*self.size, 3) if self.channels == 3 else self.size

    def __len__(self) -> int:
        return len(self.names)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.take(np.arange(start, stop))

    def take(self, index) -> np.ndarray:
        index = self.check_index(index)
        out = np.empty((len(index), *self.sample_shape), np.uint8)
        names = [self.names[k] for k in index.tolist()]
        # Each image is checked as it is read, not only when the run starts: an image replaced
        # mid-run would otherwise be trained on, under the version that recorded the old one.
        sources = self.where.sources(names, [self.digests[k] for k in index.tolist()])
        changed = []
        for i, (name, source) in enumerate(zip(names, sources)):
            if isinstance(source, SourceChanged):
                changed.append(name)
                continue
            try:
                if isinstance(source, OSError):  # a file or object that could not be read
                    raise source
                out[i] = image_files.read_image(source, self.channels, self.size, self.rule)
            except (OSError, ValueError) as err:
                raise UserError(f"{image_files.shown(f'{self.where}/{name}')}, an image of the split, cannot be read now "
                                f"({summary(err)}); restore it, or log the split again.") from err
        if changed:
            listed = ", ".join(image_files.shown(n) for n in changed[:5]) + \
                (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise UserError(f"the split's source images in {self.where} changed while this run read them: {listed} "
                            "no longer hold what the split recorded. The run stopped before logging a model (what it "
                            "learnt mixed two versions of the data); restore them, or log the split again "
                            "(data_prep.py --reference) and train on the new version.")
        return out

