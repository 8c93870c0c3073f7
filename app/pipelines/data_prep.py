"""Stratified sample + train/validation/test split, logged as the versioned dataset artifact.

    python app/pipelines/data_prep.py --dataset digits
    python app/pipelines/data_prep.py --dataset mnist --fraction 10 --train_val_test_size 70 20 10
    python app/pipelines/data_prep.py --dataset imagefolder --data-dir ~/photos --image-size 64
    python app/pipelines/data_prep.py --dataset imagefolder --data-dir s3://bucket/photos --image-size 64 --reference
    python app/pipelines/data_prep.py --dataset cifar10 --data-dir data   # data/cifar-10-batches-py

Same inputs give byte-identical files, so the same W&B digest and no new version.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from app import names
from app.cli import Parser, fraction_percent, positive_int
from app.data.image_files import DEFAULT_RESIZE, RESIZE_RULES
from app.data.sources import SOURCES
from app.errors import exits_cleanly

GALLERY_PER_CLASS = 4  # sample images per class in the gallery table
FULL_BY_DEFAULT = ("digits", "imagefolder")  # small sets: all of it unless --fraction says otherwise


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=SOURCES, default="mnist",
                   help="which image set to split; imagefolder: your own images in --data-dir, one sub-folder per class")
    p.add_argument("--name", type=names.dataset_name, default=None,
                   help="the dataset's name, the prefix of its artifacts (<name>-split, <name>-<arch>) "
                        "(default: --dataset, or the image folder's name)")
    p.add_argument("--fraction", type=fraction_percent, default=None,
                   help="percent of the whole set to sample, stratified (default: 10 for MNIST, Fashion-MNIST "
                        "and CIFAR-10, 100 for digits and image folders)")
    p.add_argument("--train_val_test_size", type=int, nargs=3, default=[70, 20, 10], metavar=("TRAIN", "VAL", "TEST"),
                   help="split percentages, summing to 100")
    p.add_argument("--seed", type=int, default=42, help="seed of the sampling and the split")
    p.add_argument("--data-dir", type=data_dir, default=None,
                   help="imagefolder: the folder of class sub-folders, here or in a bucket (s3://BUCKET/FOLDER, "
                        "gs://BUCKET/FOLDER); mnist / fashion_mnist / cifar10: the folder with (or for) "
                        "torchvision's files (default: data)")
    p.add_argument("--image-size", type=positive_int, nargs="+", default=None, metavar=("H", "W"),
                   help="bring every image to H x W (W defaults to H), by --resize (default: the images' own "
                        "size when they all share it)")
    p.add_argument("--resize", choices=tuple(RESIZE_RULES), default=DEFAULT_RESIZE,
                   help="how --image-size fits an image of another shape: trim (aspect kept, the centre kept up to "
                        "4:3 for a square size, scaled to fit inside, the rest black: a long image loses some of its "
                        "ends, keeps most of its detail), crop (aspect kept, scaled to cover, the centre cropped: a "
                        "long image loses its ends), pad (aspect kept, scaled to fit inside, the rest black: nothing "
                        "is cut off, at less detail), stretch (aspect not kept). Recorded with "
                        "the dataset and the model, so predict and serve fit new images the same way (default: "
                        f"{DEFAULT_RESIZE})")
    p.add_argument("--strict", action="store_true",
                   help="imagefolder: refuse when a file cannot be read, instead of skipping and listing it")
    p.add_argument("--shard-size", type=positive_int, default=None, metavar="IMAGES",
                   help="images per shard file when a split is larger (default: as many as fit in 256 MiB); a "
                        "split that fits in one shard is one file")
    p.add_argument("--reference", action="store_true",
                   help="imagefolder: leave the images where they are (here, or in the bucket); the artifact holds "
                        "checksummed references to them (W&B's add_reference) and the labels, and a changed image is "
                        "named when the split is used")
    p.add_argument("--near-duplicates", action=argparse.BooleanOptionalAction, default=True,
                   help="look for near-copies (resized, re-encoded, slightly cropped or brightened) within and across "
                        "the splits by perceptual signature; logged as the near_duplicates table, counted in the "
                        "artifact's metadata, a warning when they straddle train and test")
    p.add_argument("--dedup", choices=("none", "near"), default="none",
                   help="near: keep one image of each group of near-copies before the split, so none can straddle "
                        "it (an image folder is decoded twice)")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download mnist / fashion_mnist / cifar10 into --data-dir when the files are missing "
                        "(independent of the W&B mode: offline W&B is not 'no network')")
    args = p.parse_args(argv)
    if args.image_size is not None:
        if len(args.image_size) > 2:
            p.error("--image-size takes H or H W")
        args.image_size = (args.image_size[0], args.image_size[-1])
    if args.reference and args.dataset != "imagefolder":
        p.error("--reference is for --dataset imagefolder: a downloaded set has no files of its own to point at")
    if args.dataset == "imagefolder" and args.data_dir is None:
        p.error("--dataset imagefolder needs --data-dir DIR: a folder with one sub-folder of images per class")
    if args.dedup == "near" and not args.near_duplicates:
        p.error("--dedup near finds the near-copies it leaves out: drop --no-near-duplicates")
    if args.dataset != "imagefolder" and isinstance(args.data_dir, str):
        p.error(f"--data-dir {args.data_dir}: a bucket is read for --dataset imagefolder; {args.dataset} is read from "
                "a folder on this machine")
    return args


def data_dir(text: str) -> Path | str:
    """A folder here (a Path), or a bucket's prefix kept as its URI (s3://..., gs://...)."""
    from app.data.locations import is_bucket

    return text if is_bucket(text) else Path(text)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    from app.data.locations import location
    from app.data.split import check_sizes

    sizes = check_sizes(args.train_val_test_size)
    fraction = args.fraction if args.fraction is not None else (100.0 if args.dataset in FULL_BY_DEFAULT else 10.0)
    where = location(args.data_dir) if args.dataset == "imagefolder" else None
    name = args.name or (names.name_from_folder(where.name) if where else args.dataset)

    from app.data import plots
    from app.data.prepare import prepare, report_duplicates
    from app.data.split import SPLITS, class_balance, report_balance
    from app.tracking import backend, start_run

    config = {"dataset": name, "source": args.dataset, "fraction": fraction, "train_val_test_size": list(sizes),
              "seed": args.seed, "image_size": list(args.image_size) if args.image_size else None,
              "resize": args.resize,
              "dedup": args.dedup}
    # Online: a bad key or no network fails now, before a large folder is read; offline: a store
    # that cannot be written.
    backend().check_writable()
    with tempfile.TemporaryDirectory(prefix="data_prep-") as tmp:
        # Reading, splitting and writing the files come before the run, so bad data (mixed sizes,
        # corrupt files with --strict, too few images) leaves no failed run behind.
        print(f"loading {args.dataset} ...", file=sys.stderr)
        prepared = prepare(args, name, fraction, sizes, Path(tmp))
        split = prepared.split
        report_duplicates(prepared)
        balance = class_balance(split.class_counts(), split.class_names)
        report_balance(balance)

        with start_run("data_prep", config) as run:
            counts = split.class_counts()
            run.log({
                "label_distribution": run.image(plots.label_distribution(counts, split.class_names)),
                "label_counts": run.table(
                    ["label", "class", *SPLITS],
                    [[i, class_name, *(counts[s][i] for s in SPLITS)] for i, class_name in enumerate(split.class_names)],
                ),
                "gallery": run.table(["split", "label", "class", "image"], gallery_rows(run, split)),
            })
            if prepared.near is not None:
                run.log({"near_duplicates": run.table(
                    ["image", "split", "index", "near copy", "its split", "its index", "distance"],
                    near_duplicate_rows(run, split, prepared.near))})

            shape = list(split.images["train"].shape[1:])
            metadata = {
                "dataset": name,
                "source": prepared.source,
                "fraction": fraction,
                "train_val_test_size": list(sizes),
                "seed": args.seed,
                "split_sizes": split.sizes(),
                "class_counts": counts,
                "class_names": split.class_names,
                "image_shape": shape,  # (H, W) for greyscale, (H, W, C) for colour, as the arrays are stored
                "image_size": shape[:2],
                "channels": prepared.channels,
                "mean": prepared.mean,  # per channel, of the training split, pixels in [0, 1]: the models' normalisation
                "std": prepared.std,
                "resize": prepared.resize,
                "light_on_dark": prepared.light_on_dark,
                "augment": prepared.augment,  # train.py's default --augment (PreparedSplit.augment)
                "skipped_files": prepared.skipped,
                "dtype": "uint8",
                "duplicates_across_splits": prepared.duplicates,
                "class_balance": balance,
            }
            if prepared.near is not None:
                metadata["near_duplicates"] = prepared.near.metadata()
            if prepared.shard_size:  # recorded only when sharded: a one-file split's metadata is as before
                metadata["shard_size"] = prepared.shard_size
            if prepared.references:  # the files besides the references: what a use downloads
                metadata["references"] = {"root": where.uri, "images": len(prepared.references),
                                          "files": sorted(prepared.files)}
            logged = run.log_artifact(names.dataset_artifact(name), names.DATASET_TYPE, prepared.files, metadata,
                                      references=prepared.references)
            run.summary({"split_sizes": split.sizes(), "duplicates_across_splits": prepared.duplicates,
                         "skipped_files": len(prepared.skipped), "imbalance_ratio": balance["imbalance_ratio"],
                         **({"near_duplicate_pairs": len(prepared.near.pairs)} if prepared.near else {})})

    sizes_text = ", ".join(f"{s} {n}" for s, n in split.sizes().items())
    near = prepared.near
    left_out = f", {near.removed} left out" if near is not None and near.removed else ""
    near_text = "" if near is None else \
        f"{len(near.pairs)} near-duplicate pairs ({near.across('train', 'test')} train/test{left_out}); "
    channels = "greyscale" if prepared.channels == 1 else f"{prepared.channels} channels"
    shards = f"; shards of {prepared.shard_size} images" if prepared.shard_size else \
        f"; {len(prepared.references)} images referenced in {where.recorded}" if prepared.references else ""
    print(f"dataset artifact: {logged.ref}  (digest {logged.digest}; {sizes_text}; "
          f"{'x'.join(map(str, shape[:2]))} {channels}{f' (fitted by --resize {args.resize})' if prepared.resize else ''}; "
          f"{len(split.class_names)} classes{shards}; "
          f"{prepared.duplicates} cross-split duplicates; {near_text}{len(prepared.skipped)} unreadable files skipped)")


NEAR_TABLE_ROWS = 200  # pairs shown in the near_duplicates table (all are counted in the metadata)


def near_duplicate_rows(run, split, near) -> list[list]:
    """The pairs side by side, those across splits first (they are what leaks), closest first."""
    pairs = sorted(near.pairs, key=lambda p: (p[0] == p[2], p[4]))[:NEAR_TABLE_ROWS]
    return [[run.image(split.images[a][i]), a, i, run.image(split.images[b][j]), b, j, distance]
            for a, i, b, j, distance in pairs]


def gallery_rows(run, split) -> list[list]:
    """A few training images per class, for eyeballing labels in the W&B UI."""
    import numpy as np

    rows = []
    labels = split.labels["train"]
    for label, name in enumerate(split.class_names):
        for index in np.flatnonzero(labels == label)[:GALLERY_PER_CLASS]:
            rows.append(["train", label, name, run.image(split.images["train"][index])])
    return rows


if __name__ == "__main__":
    main()
