"""Stratified sample + train/validation/test split, logged as the versioned dataset artifact.

    python app/pipelines/data_prep.py --dataset digits
    python app/pipelines/data_prep.py --dataset mnist --fraction 10 --train_val_test_size 70 20 10

Same inputs give byte-identical files, so the same W&B digest and no new version.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from app import names
from app.cli import Parser, fraction_percent
from app.errors import exits_cleanly

GALLERY_PER_CLASS = 4  # sample images per class in the gallery table


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=names.DATASETS, default="mnist", help="which image set to split")
    p.add_argument("--fraction", type=fraction_percent, default=None,
                   help="percent of the whole set to sample, stratified (default: 10 for MNIST and Fashion-MNIST, 100 for digits)")
    p.add_argument("--train_val_test_size", type=int, nargs=3, default=[70, 20, 10], metavar=("TRAIN", "VAL", "TEST"),
                   help="split percentages, summing to 100")
    p.add_argument("--seed", type=int, default=42, help="seed of the sampling and the split")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="folder with (or for) the torchvision raw files of mnist / fashion_mnist")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=True,
                   help="download mnist / fashion_mnist into --data-dir when the files are missing "
                        "(independent of the W&B mode: offline W&B is not 'no network')")
    return p.parse_args(argv)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    from app.data.split import check_sizes

    sizes = check_sizes(args.train_val_test_size)
    fraction = args.fraction if args.fraction is not None else (100.0 if args.dataset == "digits" else 10.0)

    from app.data import plots
    from app.data.sources import load_dataset
    from app.data.split import SPLITS, cross_split_duplicates, stratified_split
    from app.data.split_files import write_split
    from app.tracking import start_run

    config = {"dataset": args.dataset, "fraction": fraction, "train_val_test_size": list(sizes), "seed": args.seed}
    with start_run("data_prep", config) as run:
        print(f"loading {args.dataset} ...", file=sys.stderr)
        raw = load_dataset(args.dataset, args.data_dir, download=args.download)
        split = stratified_split(raw, fraction, sizes, args.seed)
        duplicates = cross_split_duplicates(split)
        if duplicates:
            print(f"warning: {duplicates} image(s) in val/test also appear in an earlier split.", file=sys.stderr)

        counts = split.class_counts()
        run.log({
            "label_distribution": run.image(plots.label_distribution(counts, split.class_names)),
            "label_counts": run.table(
                ["label", "class", *SPLITS],
                [[i, name, *(counts[s][i] for s in SPLITS)] for i, name in enumerate(split.class_names)],
            ),
            "gallery": run.table(["split", "label", "class", "image"], gallery_rows(run, split)),
        })

        metadata = {
            "dataset": args.dataset,
            "source": raw.source,
            "fraction": fraction,
            "train_val_test_size": list(sizes),
            "seed": args.seed,
            "split_sizes": split.sizes(),
            "class_counts": counts,
            "class_names": split.class_names,
            "image_shape": list(split.images["train"].shape[1:]),
            "dtype": "uint8",
            "duplicates_across_splits": duplicates,
        }
        with tempfile.TemporaryDirectory() as tmp:
            files = write_split(split, Path(tmp))
            logged = run.log_artifact(names.dataset_artifact(args.dataset), names.DATASET_TYPE, files, metadata)
        run.summary({"split_sizes": split.sizes(), "duplicates_across_splits": duplicates})

    sizes_text = ", ".join(f"{s} {n}" for s, n in split.sizes().items())
    print(f"dataset artifact: {logged.ref}  (digest {logged.digest}; {sizes_text}; "
          f"{duplicates} cross-split duplicates)")


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
