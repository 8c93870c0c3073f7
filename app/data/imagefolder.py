"""A folder of images, one sub-folder per class (torchvision's ImageFolder convention).

Two passes: the first (scan_image_folder) reads only headers (size, colour mode) to choose the
channel count and check the sizes before any pixel is decoded; the second (decode) decodes and
fits the images a chunk at a time, in a pool of processes when given one, so data_prep writes a
folder larger than memory shard by shard. Unreadable files are skipped and listed (or refused
with strict); the class names are the sub-folder names, sorted.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.data import image_files, memory
from app.errors import UserError, summary
from app.progress import progress


@dataclass
class FolderImages:
    images: np.ndarray  # uint8 (N, H, W) greyscale or (N, H, W, 3) colour
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    skipped: list[dict] = field(default_factory=list)  # {"file": relative path, "reason": ...}
    resized: bool = False


def list_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, label)]) in a stable order; hidden files and non-image suffixes ignored."""
    if not root.is_dir():
        raise UserError(f"--data-dir {root} is not a folder; pass a folder with one sub-folder of images per class.")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = [image_files.shown(name) for name in folders]  # a label plot cannot draw undecodable bytes
    if len(classes) < 2:
        raise UserError(f"{root} has {len(classes)} class folder(s); an image folder needs one sub-folder per "
                        f"class and at least two classes (e.g. {root}/cats/*.jpg, {root}/dogs/*.jpg).")
    extensions = image_files.image_extensions()
    files = []
    for label, name in enumerate(folders):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in extensions:
                files.append((path, label))
    return classes, files


@dataclass
class FolderScan:
    """What the headers say, before any pixel is decoded: the readable files and their labels, the
    channel count and the one size every image is brought to."""

    root: Path
    files: list[Path]
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    channels: int
    size: tuple[int, int]
    skipped: list[dict]
    resized: bool

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (*self.size, self.channels) if self.channels == 3 else tuple(self.size)

    def skip(self, index: int, reason: str) -> None:
        self.skipped.append({"file": image_files.shown(str(self.files[index].relative_to(self.root))), "reason": reason})

    def warn_skipped(self, strict: bool) -> None:
        if self.skipped:
            if strict:
                raise _strict_refusal(self.skipped, self.root)
            print(f"warning: {_skipped_text(self.skipped, self.root)} They are listed in the artifact's metadata "
                  "(skipped_files); --strict refuses instead.", file=sys.stderr)


def scan_image_folder(root: Path, size: tuple[int, int] | None, strict: bool) -> FolderScan:
    classes, files = list_files(root)
    headers, skipped = {}, []
    for path, _ in progress(files, len(files), f"reading headers in {root}", unit="files"):
        try:
            headers[path] = image_files.read_header(path)
        except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
            skipped.append({"file": image_files.shown(str(path.relative_to(root))), "reason": summary(err)})
    if skipped and strict:  # refused before decoding a single image
        raise _strict_refusal(skipped, root)
    readable = [(p, label) for p, label in files if p in headers]
    counts = Counter(label for _, label in readable)
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise UserError(f"class folder(s) {', '.join(empty)} in {root} hold no readable image; "
                        "every class needs images (or remove the folder).")
    channels = 3 if any(image_files.channels_of_mode(mode) == 3 for _, mode in headers.values()) else 1
    target = tuple(size or _one_size(headers, root))
    return FolderScan(root=root, files=[p for p, _ in readable],
                      labels=np.array([label for _, label in readable], dtype=np.int64), class_names=classes,
                      channels=channels, size=target, skipped=skipped,
                      resized=any(size_hw != target for size_hw, _ in headers.values()))


def decode(scan: FolderScan, indices: np.ndarray, pool=None,
           digests: bool = False) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """The images at `indices` of the scan, decoded and fitted (by `pool`'s processes when given),
    a mask of those that decoded (the others are added to scan.skipped) and, with `digests`, each
    file's MD5 as W&B's manifests record it (data_prep --reference keeps them; else None each)."""
    paths = [scan.files[i] for i in indices]
    tasks = [(paths[i:i + DECODE_BATCH], scan.channels, scan.size, digests) for i in range(0, len(paths), DECODE_BATCH)]
    results = pool.imap(_decode_batch, tasks) if pool is not None else map(_decode_batch, tasks)
    images = np.zeros((len(paths), *scan.sample_shape), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    found: list[str | None] = []
    position = 0
    for batch in results:
        for item in batch:
            if isinstance(item, str):  # readable header, damaged pixels (a truncated file)
                keep[position] = False
                scan.skip(int(indices[position]), item)
                found.append(None)
            else:
                images[position], digest = item
                found.append(digest)
            position += 1
    return images, keep, found


DECODE_BATCH = 64  # files per task sent to a decoding process


def _decode_batch(task) -> list:
    """A decoding process's work: each file as (a fitted uint8 array, its MD5 when asked for), or why
    it could not be read."""
    from app.data.references import md5_b64

    paths, channels, size, digests = task
    out = []
    for path in paths:
        try:
            out.append((image_files.read_image(path, channels, size), md5_b64(path) if digests else None))
        except (OSError, ValueError) as err:
            out.append(summary(err))
    return out


def load_image_folder(root: Path, size: tuple[int, int] | None, strict: bool) -> FolderImages:
    """The whole folder in memory (data_prep writes folders through scan_image_folder and decode,
    a shard at a time)."""
    scan = scan_image_folder(root, size, strict)
    memory.check_fits(len(scan.files), scan.sample_shape)
    images, keep, _ = decode(scan, np.arange(len(scan.files)))
    scan.warn_skipped(strict)
    return FolderImages(images=images[keep] if not keep.all() else images, labels=scan.labels[keep],
                        class_names=scan.class_names, skipped=scan.skipped, resized=scan.resized)


def _one_size(headers: dict, root: Path) -> tuple[int, int]:
    """The images' common size, or an error that shows the sizes found and asks for --image-size."""
    sizes = Counter(hw for hw, _ in headers.values())
    if len(sizes) == 1:
        return next(iter(sizes))
    common = ", ".join(f"{h}x{w} ({n} files)" for (h, w), n in sizes.most_common(5))
    more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
    smallest = min(min(hw) for hw in sizes)
    raise UserError(
        f"the images in {root} have {len(sizes)} different sizes (height x width): {common}{more}. Pass "
        f"--image-size H [W] to bring them to one size ({image_files.RESIZE_RULE}), e.g. "
        f"--image-size {min(smallest, 64)}."
    )


def _strict_refusal(skipped: list[dict], root: Path) -> UserError:
    return UserError(_skipped_text(skipped, root) + " --strict refuses: remove or fix them, or drop --strict.")


def _skipped_text(skipped: list[dict], root: Path) -> str:
    shown = ", ".join(s["file"] for s in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return f"{len(skipped)} file(s) in {root} could not be read as images: {shown}."
