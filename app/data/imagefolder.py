"""A folder of images, one sub-folder per class (torchvision's ImageFolder convention), on this
machine or in a bucket (app/data/locations.py: s3://bucket/photos, gs://bucket/photos).

Two passes: the first (scan_image_folder) reads only headers (size, colour mode) to choose the
channel count and check the sizes before any pixel is decoded; the second (decode) decodes and
fits the images a chunk at a time, in a pool of processes when given one, so data_prep writes a
folder larger than memory shard by shard. Unreadable files are skipped and listed (or refused
with strict); the class names are the sub-folder names, sorted.
"""
from __future__ import annotations

import io
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.data import image_files, memory, near_duplicates
from app.data.locations import BucketPrefix, LocalFolder, bytes_md5_b64, location
from app.errors import UserError, summary
from app.progress import progress


@dataclass
class FolderImages:
    images: np.ndarray  # uint8 (N, H, W) greyscale or (N, H, W, 3) colour
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    skipped: list[dict] = field(default_factory=list)  # {"file": relative path, "reason": ...}
    resized: bool = False


Where = LocalFolder | BucketPrefix


def list_files(where: Where) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names, [(file relative to the folder, label)]) in a stable order; hidden files and
    folders and non-image suffixes ignored."""
    folders = [name for name in where.folders() if not name.startswith(".")]
    classes = [image_files.shown(name) for name in folders]  # a label plot cannot draw undecodable bytes
    if len(classes) < 2:
        raise UserError(f"{where} has {len(classes)} class folder(s); an image folder needs one sub-folder per "
                        f"class and at least two classes (e.g. {where}/cats/*.jpg, {where}/dogs/*.jpg).")
    extensions = image_files.image_extensions()
    files = []
    for label, name in enumerate(folders):
        for file in where.files(name):
            base = file.rsplit("/", 1)[-1]
            if not base.startswith(".") and Path(base).suffix.lower() in extensions:
                files.append((file, label))
    return classes, files


@dataclass
class FolderScan:
    """What the headers say, before any pixel is decoded: the readable files and their labels, the
    channel count and the one size every image is brought to."""

    where: Where
    files: list[str]  # relative to the folder
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    channels: int
    size: tuple[int, int]
    skipped: list[dict]
    resized: bool
    resize: str = image_files.DEFAULT_RESIZE  # the rule (image_files.RESIZE_RULES) that fits other sizes
    crop_cuts: list[float] = field(default_factory=list)  # per file, the share crop cuts off (image_files.crop_cut)
    greyscale: list[bool] = field(default_factory=list)  # per file, whether its mode has no colour

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (*self.size, self.channels) if self.channels == 3 else tuple(self.size)

    @property
    def signed_rule(self) -> str:
        """The fit near-duplicate signatures, and the looks that check them, are taken of: a bordered
        fit's black border would move with a copy's crop, so those take the file's crop fit."""
        return "crop" if self.resize in image_files.BORDERED else self.resize

    def skip(self, index: int, reason: str) -> None:
        self.skipped.append({"file": image_files.shown(self.files[index]), "reason": reason})

    def keep_only(self, positions: np.ndarray) -> None:
        """Leave out every file but those at `positions` (data_prep --dedup near, before the split)."""
        self.files = [self.files[i] for i in positions.tolist()]
        self.labels = self.labels[positions]
        self.crop_cuts = [self.crop_cuts[i] for i in positions.tolist()]
        self.greyscale = [self.greyscale[i] for i in positions.tolist()]

    def warn_skipped(self, strict: bool) -> None:
        if self.skipped:
            if strict:
                raise _strict_refusal(self.skipped, self.where)
            print(f"warning: {_skipped_text(self.skipped, self.where)} They are listed in the artifact's metadata "
                  "(skipped_files); --strict refuses instead.", file=sys.stderr)


def scan_image_folder(root: Path | str | Where, size: tuple[int, int] | None, strict: bool,
                      resize: str = image_files.DEFAULT_RESIZE) -> FolderScan:
    where = root if isinstance(root, (LocalFolder, BucketPrefix)) else location(root)
    classes, files = list_files(where)
    headers, skipped = {}, []

    def header(name: str, source):
        try:
            if isinstance(source, OSError):  # a bucket's object that could not be fetched
                raise source
            return image_files.read_header(source)
        except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
            return err

    names = [name for name, _ in files]
    found = map(header, names, where.sources(names))
    for name, result in progress(zip(names, found), len(names), f"reading headers in {where}", unit="files"):
        if isinstance(result, Exception):
            skipped.append({"file": image_files.shown(name), "reason": summary(result)})
        else:
            headers[name] = result
    if skipped and strict:  # refused before decoding a single image
        raise _strict_refusal(skipped, where)
    readable = [(p, label) for p, label in files if p in headers]
    counts = Counter(label for _, label in readable)
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        raise UserError(f"class folder(s) {', '.join(empty)} in {where} hold no readable image; "
                        "every class needs images (or remove the folder).")
    channels = 3 if any(image_files.channels_of_mode(mode) == 3 for _, mode in headers.values()) else 1
    target = tuple(size or _one_size(headers, where))
    return FolderScan(where=where, files=[p for p, _ in readable],
                      labels=np.array([label for _, label in readable], dtype=np.int64), class_names=classes,
                      channels=channels, size=target, skipped=skipped,
                      resized=any(size_hw != target for size_hw, _ in headers.values()), resize=resize,
                      crop_cuts=[image_files.crop_cut(headers[p][0], target) for p, _ in readable],
                      greyscale=[image_files.channels_of_mode(headers[p][1]) == 1 for p, _ in readable])


def decode(scan: FolderScan, indices: np.ndarray, pool=None, digests: bool = False,
           signatures: bool = False, rule: str | None = None
           ) -> tuple[np.ndarray, np.ndarray, list[str | None], np.ndarray | None]:
    """The images at `indices` of the scan, decoded and fitted by `rule` (default: the scan's) by
    `pool`'s processes when given, a mask of those that decoded (the others are added to
    scan.skipped), with `digests` each file's digest as W&B's manifests record it (data_prep
    --reference keeps them; else None each), and with `signatures` each image's near-duplicate
    signature (app/data/near_duplicates.py) of its scan.signed_rule fit, computed in the decoding
    process (else None)."""
    paths = [scan.files[i] for i in indices]
    rules = tuple(dict.fromkeys((rule or scan.resize, scan.signed_rule) if signatures else (rule or scan.resize,)))
    tasks = [(scan.where, paths[i:i + DECODE_BATCH], scan.channels, scan.size, rules, digests, signatures)
             for i in range(0, len(paths), DECODE_BATCH)]
    results = pool.imap(_decode_batch, tasks) if pool is not None else map(_decode_batch, tasks)
    images = np.zeros((len(paths), *scan.sample_shape), dtype=np.uint8)
    keep = np.ones(len(paths), dtype=bool)
    found: list[str | None] = []
    signed = np.zeros((len(paths), near_duplicates.DIMENSIONS * scan.channels), np.float32) if signatures else None
    position = 0
    for batch, batch_signatures in results:
        start = position
        for item in batch:
            if isinstance(item, str):  # readable header, damaged pixels (a truncated file)
                keep[position] = False
                scan.skip(int(indices[position]), item)
                found.append(None)
            else:
                images[position], digest = item
                found.append(scan.where.listed_digest(paths[position]) if digests and scan.where.remote else digest)
            position += 1
        if signatures:
            signed[start:position][keep[start:position]] = batch_signatures
    return images, keep, found, signed


DECODE_BATCH = 64  # files per task sent to a decoding process


def _decode_batch(task) -> list:
    """A decoding process's work: each file as (a fitted uint8 array, its MD5 when asked for), or
    why it could not be read; and, when asked for, the near-duplicate signatures of those decoded.
    A local file is read once: its bytes are decoded and hashed."""
    where, names, channels, size, rules, digests, signatures = task  # the fit's rule, then the signed one's if other
    out, signed = [], []
    for name, source in zip(names, where.sources(names)):
        try:
            if isinstance(source, OSError):  # a bucket's object that could not be fetched
                raise source
            if digests and not where.remote:  # a bucket's digests come from its listing
                data = where.read(name)  # read once: decoded and hashed
                fits, digest = image_files.read_fits(io.BytesIO(data), channels, size, rules), bytes_md5_b64(data)
            else:
                fits, digest = image_files.read_fits(source, channels, size, rules), None
            out.append((fits[0], digest))
            signed.append(fits[-1])
        except (OSError, ValueError) as err:
            out.append(summary(err))
    return out, (near_duplicates.signatures(signed) if signatures and signed else None)


def load_image_folder(root: Path, size: tuple[int, int] | None, strict: bool,
                      resize: str = image_files.DEFAULT_RESIZE) -> FolderImages:
    """The whole folder in memory (data_prep writes folders through scan_image_folder and decode,
    a shard at a time)."""
    scan = scan_image_folder(root, size, strict, resize)
    memory.check_fits(len(scan.files), scan.sample_shape)
    images, keep, _, _ = decode(scan, np.arange(len(scan.files)))
    scan.warn_skipped(strict)
    return FolderImages(images=images[keep] if not keep.all() else images, labels=scan.labels[keep],
                        class_names=scan.class_names, skipped=scan.skipped, resized=scan.resized)


def _one_size(headers: dict, root: Where) -> tuple[int, int]:
    """The images' common size, or an error that shows the sizes found and asks for --image-size."""
    sizes = Counter(hw for hw, _ in headers.values())
    if len(sizes) == 1:
        return next(iter(sizes))
    common = ", ".join(f"{h}x{w} ({n} files)" for (h, w), n in sizes.most_common(5))
    more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
    smallest = min(min(hw) for hw in sizes)
    raise UserError(
        f"the images in {root} have {len(sizes)} different sizes (height x width): {common}{more}. Pass "
        f"--image-size H [W] to bring them to one size (--resize: {', '.join(image_files.RESIZE_RULES)}), e.g. "
        f"--image-size {min(smallest, 64)}."
    )


def _strict_refusal(skipped: list[dict], root: Where) -> UserError:
    return UserError(_skipped_text(skipped, root) + " --strict refuses: remove or fix them, or drop --strict.")


def _skipped_text(skipped: list[dict], root: Where) -> str:
    shown = ", ".join(s["file"] for s in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return f"{len(skipped)} file(s) in {root} could not be read as images: {shown}."
