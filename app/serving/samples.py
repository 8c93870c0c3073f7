"""serve.py --log-samples N: a uniform sample of the images served (reservoir sampling, so every
upload of the server's life has the same chance whatever its length), kept as uploaded and logged
when the server stops as the `serving-samples` dataset artifact laid out as an image folder: one
sub-folder per predicted class. A person moves each misfiled image to its true class and
prepares the folder with `data_prep.py --dataset imagefolder`, closing the loop."""
from __future__ import annotations

import io
import random
import re
import threading
from pathlib import Path


class SampleKeeper:
    def __init__(self, size: int, seed: int = 0):
        self.size, self.seen = size, 0
        self.kept: list[tuple[bytes, str]] = []  # (the upload's bytes, its predicted class)
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def offer(self, data: bytes, predicted: str) -> None:
        with self._lock:
            self.seen += 1
            if len(self.kept) < self.size:
                self.kept.append((data, predicted))
            else:
                slot = self._random.randrange(self.seen)  # Algorithm R: kept with probability size / seen
                if slot < self.size:
                    self.kept[slot] = (data, predicted)

    def write(self, folder: Path) -> dict[str, Path]:
        """The sample as folder/<predicted class>/<n>.<format>: {name inside the artifact: path}."""
        from PIL import Image

        files = {}
        with self._lock:
            kept = list(self.kept)
        for n, (data, predicted) in enumerate(kept):
            with Image.open(io.BytesIO(data)) as image:
                suffix = (image.format or "img").lower().replace("jpeg", "jpg")
            name = f"{_folder_name(predicted)}/{n:05d}.{suffix}"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            files[name] = folder / name
        return files


def _folder_name(class_name: str) -> str:
    """A class name as a folder name: no path separators, not hidden, not empty."""
    cleaned = re.sub(r"[/\\\\\x00]", "_", class_name).lstrip(".")
    return cleaned or "_"


def log_samples(run, keeper: SampleKeeper, model_ref: str) -> str | None:
    """The sample logged as `serving-samples` (None when nothing was served)."""
    import tempfile

    from app import names

    if not keeper.kept:
        return None
    with tempfile.TemporaryDirectory(prefix="serving-samples-") as tmp:
        files = keeper.write(Path(tmp))
        logged = run.log_artifact(names.SERVING_SAMPLES, names.DATASET_TYPE, files, {
            "model": model_ref, "samples": len(files), "served": keeper.seen,
            "layout": "an image folder: one sub-folder per predicted class; move each image to its true class, then "
                      "data_prep.py --dataset imagefolder --data-dir <the folder>"})
    return logged.ref
