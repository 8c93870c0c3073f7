"""Near-duplicates: how well the signature separates planted copies from distinct images, and
what the check costs.

    python benchmarks/bench_near_duplicates.py quality           # the table THRESHOLD was chosen from
    python benchmarks/bench_near_duplicates.py cost [--images 200000]

quality: for each set, 5% of its images get a near-copy (benchmarks/near_copies.py); printed per
threshold: the recall (planted pairs found) and the precision (found pairs that were planted), for
the signature (app/data/near_duplicates.py), then at its threshold with data_prep's second look, and,
beside it, imagehash's 64-bit phash by Hamming distance. cost: data_prep.py on a folder of --images colour objects (benchmarks/colour_sets.py) brought to
32 px, with the check and with --no-near-duplicates, in the same run; then the index alone on
a quarter, a half and all of up to 50,000 of their signatures (how its time grows).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import near_copies  # noqa: E402
from offline_runs import offline_env  # noqa: E402
from app.data import near_duplicates  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def sets(count: int) -> dict[str, np.ndarray]:
    """The sets measured: digits-sized greyscale and 64 px colour."""
    import random

    import colour_sets
    from make_mnist_like import distorted_digit, source_digits
    from make_shapes import draw_shape
    from PIL import Image

    from app.data.image_files import fit_image
    from app.data.sources import load_digits_28

    sources, _ = source_digits()
    rng = np.random.default_rng(0)
    out = {"digits (8x8 drawn at 28)": load_digits_28().images[:count],
           "mnist-like 28 grey": np.stack([distorted_digit(sources[i % len(sources)], rng) for i in range(count)])}
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for kind in ("objects", "patterns"):
            colour_sets.write(kind, root / kind, count // 5)
            files = sorted((root / kind).rglob("*.*"))
            out[f"{kind} 64 colour"] = np.stack([fit_image(Image.open(f), 3, (64, 64)) for f in files])
            if kind == "objects":
                out["objects 28 grey"] = np.stack([fit_image(Image.open(f), 1, (28, 28)) for f in files])
    shapes_rng = random.Random(0)
    out["make_shapes 64 colour"] = np.stack([
        fit_image(draw_shape(kind, shapes_rng), 3, (64, 64)) for _ in range(count // 4)
        for kind in ("circle", "square", "triangle", "cross")])
    return out


def phash_pairs(images: np.ndarray, threshold: int) -> set[tuple[int, int]]:
    import imagehash
    from PIL import Image

    bits = np.stack([np.packbits(imagehash.phash(Image.fromarray(image)).hash.ravel()) for image in images])
    distance = np.unpackbits(bits[:, None, :] ^ bits[None, :, :], axis=2).sum(2)
    first, second = np.nonzero(np.triu(distance <= threshold, 1))
    return set(zip(first.tolist(), second.tolist()))


def quality(count: int, thresholds: list[float]) -> None:
    for name, images in sets(count).items():
        planted_images, planted = near_copies.plant(images)
        signature = near_duplicates.signatures(planted_images)
        row = []
        for threshold in thresholds:
            first, second, _ = near_duplicates.near_pairs(signature, threshold)
            recall, precision = near_copies.scores(set(zip(first.tolist(), second.tolist())), planted)
            row.append(f"{threshold:.2f}: {recall:.2f}/{precision:.2f}")
        # data_prep's self-test on the same images: its estimate of the share of copies, beside the true precision
        first, second, distance = near_duplicates.near_pairs(signature)
        sample = np.random.default_rng(0).choice(len(planted_images), min(near_duplicates.SELF_TEST,
                                                 len(planted_images)), replace=False)
        test = near_duplicates.copy_test(distance, near_duplicates.copy_distances(planted_images[np.sort(sample)]))
        recall, precision = near_copies.scores(set(zip(first.tolist(), second.tolist())), planted)
        row.append(f"| at {near_duplicates.THRESHOLD:.2f}: recall {recall:.2f}, self-test {test['copies_found']:.2f}; "
                   f"precision {precision:.2f}, self-test "
                   f"{'none' if test['copies_share'] is None else format(test['copies_share'], '.2f')}")
        # data_prep's second look on those pairs, its threshold as rows_look_threshold sets it
        start = time.perf_counter()
        looked = near_duplicates.looked_again(first, second, lambda rows: planted_images[rows], len(planted_images))
        seconds = time.perf_counter() - start
        recall, precision = near_copies.scores(set(zip(*(part.tolist() for part in looked))), planted)
        row.append(f"| second look: recall {recall:.2f}, precision {precision:.2f} ({len(first)} pairs, "
                   f"{seconds:.1f} s)")
        hashed = []
        for threshold in (8, 10, 12):
            recall, precision = near_copies.scores(phash_pairs(planted_images, threshold), planted)
            hashed.append(f"{threshold}: {recall:.2f}/{precision:.2f}")
        print(f"{name:24s} {len(planted_images):5d} images, {len(planted):3d} planted | signature recall/precision "
              f"{'  '.join(row)} | phash {'  '.join(hashed)}", flush=True)


def _write_share(task) -> int:
    import colour_sets
    from PIL import Image

    root, per_class, seed, first, grey = task
    written = colour_sets.write("objects", root, per_class, seed=seed, first=first)
    if grey:  # the same objects as greyscale files: data_prep reads the folder as greyscale
        for path in root.rglob("*.*"):
            name = path.stem.rsplit("_", 1)
            if len(name) == 2 and first <= int(name[1]) < first + per_class:
                picture = Image.open(path)
                if picture.mode != "L":
                    picture.convert("L").save(path)
    return written


def cost(images: int, grey: bool = False) -> None:
    """data_prep on a folder of `images` objects (benchmarks/colour_sets.py: 40-96 px, PNG and JPEG,
    plain, gradient or photo backgrounds; `grey`: saved as greyscale, where the second look aligns
    each pair) brought to 32 px, with and without the check."""
    import multiprocessing

    from PIL import Image

    from app.data.image_files import fit_image

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp) / "folder"
        start = time.perf_counter()
        workers = os.cpu_count() or 1
        per_class = images // 5
        shares = [(root, per_class // workers + (k < per_class % workers), k, k * per_class, grey)
                  for k in range(workers)]
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            written = sum(pool.map(_write_share, shares))
        print(f"wrote {written} image files (colour_sets objects{', greyscale' if grey else ''}) in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        times = {}
        for label, extra in (("without the check", ["--no-near-duplicates"]), ("with the check", [])):
            home = pathlib.Path(tmp) / label.replace(" ", "_")
            home.mkdir()
            env = offline_env(home)
            start = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "app/pipelines/data_prep.py"), "--dataset", "imagefolder",
                            "--data-dir", str(root), "--image-size", "32", *extra], check=True, env=env, cwd=home)
            times[label] = time.perf_counter() - start
            print(f"data_prep {label}: {times[label]:.1f} s", flush=True)
        print(f"data_prep with the check takes {times['with the check'] / times['without the check']:.2f}x its time "
              f"without, on {written} images")
        files = sorted(root.rglob("*.*"))
        sample = [files[i] for i in np.random.default_rng(0).permutation(len(files))[:50_000]]
        start = time.perf_counter()
        signature = near_duplicates.signatures([fit_image(Image.open(f), 1 if grey else 3, (32, 32)) for f in sample])
        print(f"decoding and signatures of {len(sample)} files in this process: {time.perf_counter() - start:.1f} s")
    for n in (len(signature) // 4, len(signature) // 2, len(signature)):
        start = time.perf_counter()
        first, second, _ = near_duplicates.near_pairs(signature[:n])
        print(f"index of {n} signatures: {time.perf_counter() - start:.2f} s ({len(first)} pairs)", flush=True)
    start = time.perf_counter()
    every = all_pairs(signature, near_duplicates.THRESHOLD)
    found = set(zip(first.tolist(), second.tolist()))
    print(f"all pairs of the {len(signature)} (blocked matrix products): {time.perf_counter() - start:.1f} s, "
          f"{len(every)} pairs; the index found {len(found & every)} of them and {len(found - every)} others")


def all_pairs(signature: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Every pair within the threshold, by distances block by block: the reference for the index."""
    squared = (signature.astype(np.float64) ** 2).sum(1)
    pairs = set()
    for start in range(0, len(signature), 2048):
        block = signature[start:start + 2048].astype(np.float64)
        distance = squared[start:start + len(block), None] + squared[None, :] - 2 * block @ signature.T
        rows, cols = np.nonzero(distance <= threshold ** 2 + 1e-9)
        rows += start
        keep = rows < cols
        pairs |= set(zip(rows[keep].tolist(), cols[keep].tolist()))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("quality", "cost"))
    parser.add_argument("--count", type=int, default=1000, help="quality: images per set")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
    parser.add_argument("--images", type=int, default=200_000, help="cost: images in the folder")
    parser.add_argument("--grey", action="store_true", help="cost: the folder's files in greyscale")
    args = parser.parse_args()
    quality(args.count, args.thresholds) if args.what == "quality" else cost(args.images, args.grey)


if __name__ == "__main__":
    main()
