"""Quality: the project's default recipe beside classical baselines on the same split.

    python app/pipelines/data_prep.py --dataset digits
    python benchmarks/bench_quality.py [--data digits-split:latest] [--epochs N] [--arch cnn]
    python benchmarks/bench_quality.py --kind patterns|objects [--per-class 240] [--split 70 20 10] [--resize pad]
                                       [--lr 0.003 ...]

Reads a dataset artifact (from W&B or the embedded store, as the scripts do), or with --kind
writes a colour folder unlike make_shapes' (benchmarks/colour_sets.py) and prepares it as
`data_prep.py --dataset imagefolder --image-size 48 [--resize RULE] [--train_val_test_size ...]` does, in a
store of its own (`--per-class 480 --split 35 10 55`: as many training images as the default, and a
test split of 1,320 images, where one image is 0.08 points, not 0.8); then trains the
default recipe of `--arch` (as `train.py` with no training flag: the step budget's epochs,
unless --epochs) on its train split (the model kept is the best validation epoch's,
as train.py keeps it), and fits scikit-learn's logistic regression and RBF SVC on the same
train split's pixels (scaled to [0, 1], default settings). Printed: test accuracy of each,
and the seconds each took on this machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import names  # noqa: E402
from app.data.image_files import DEFAULT_RESIZE, RESIZE_RULES  # noqa: E402
from app.data.split_files import read_split  # noqa: E402
from app.errors import exits_cleanly  # noqa: E402
from app.tracking import backend, discovery  # noqa: E402
from app.training import engine  # noqa: E402
from app.recipe.config import (TrainConfig, add_flags, from_flags, hyperparameter_names,  # noqa: E402
                                 unset_flags, with_dataset_defaults)
from app.training.workflow import load_training_data, recipe_for, train  # noqa: E402
from offline_runs import offline_settings  # noqa: E402


REPO = Path(__file__).resolve().parents[1]


def prepare_kind(kind: str, per_class: int, workdir: Path, image_size: int = 48, resize: str = DEFAULT_RESIZE,
                 split: tuple[int, int, int] = (70, 20, 10)) -> None:
    """A folder of `kind` (colour_sets.py) logged by data_prep.py into an offline store under
    `workdir`, which this process then reads (PIPELINE_STORE_DIR)."""
    import colour_sets

    colour_sets.write(kind, workdir / kind, per_class)
    os.environ.update(offline_settings(workdir))
    subprocess.run([sys.executable, str(REPO / "app" / "pipelines" / "data_prep.py"), "--dataset", "imagefolder",
                    "--data-dir", str(workdir / kind), "--image-size", str(image_size), "--resize", resize,
                    "--train_val_test_size", *map(str, split)],
                   cwd=workdir, check=True, capture_output=True)


def pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def classical(split) -> list[tuple[str, float, float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    results = []
    x_train, x_test = pixels(split.images["train"]), pixels(split.images["test"])
    for label, model in (("logistic regression (pixels)", LogisticRegression(max_iter=2000)),
                         ("RBF SVC (pixels)", SVC(kernel="rbf"))):
        started = time.perf_counter()
        model.fit(x_train, split.labels["train"])
        accuracy = float((model.predict(x_test) == split.labels["test"]).mean())
        results.append((label, accuracy, time.perf_counter() - started))
    return results


@exits_cleanly
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="REF", help="dataset artifact (default: the newest <dataset>-split:latest)")
    p.add_argument("--arch", choices=names.ARCHITECTURES, default=TrainConfig.arch, help="the recipe's architecture")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the recipe (default: train.py's, from the step budget; best validation epoch kept)")
    p.add_argument("--kind", choices=("patterns", "objects"),
                   help="write this colour folder (benchmarks/colour_sets.py) and measure on it instead")
    p.add_argument("--per-class", type=int, default=240, help="--kind: images per class (5 classes)")
    p.add_argument("--resize", choices=tuple(RESIZE_RULES), default=DEFAULT_RESIZE,
                   help=f"--kind: data_prep's rule for the images' other sizes (default: data_prep's, {DEFAULT_RESIZE})")
    p.add_argument("--split", type=int, nargs=3, default=(70, 20, 10), metavar=("TRAIN", "VAL", "TEST"),
                   help="--kind: data_prep's --train_val_test_size (default: 70 20 10, data_prep's)")
    add_flags(p.add_argument_group("hyperparameters other than the default, as train.py takes them (--lr 0.003)"))
    args = p.parse_args()
    if not args.kind:
        return measure(args)
    with tempfile.TemporaryDirectory(prefix=f"bench-quality-{args.kind}-") as workdir:
        prepare_kind(args.kind, args.per_class, Path(workdir), resize=args.resize, split=tuple(args.split))
        print(f"kind: {args.kind}, {5 * args.per_class} images written and prepared (--resize {args.resize})")
        measure(args)


def measure(args) -> None:
    store = backend()
    ref = args.data or names.dataset_artifact(discovery.dataset_name(store, None))
    dataset = store.fetch(ref, names.DATASET_TYPE)
    split = read_split(dataset.path)
    device = engine.pick_device("auto")
    sizes = split.sizes()
    print(f"data: {dataset.ref} ({sizes['train']} train, {sizes['val']} val, {sizes['test']} test, "
          f"shape {list(split.images['train'].shape[1:])}, {len(split.class_names)} classes); device {device}")

    started = time.perf_counter()
    given = {k: getattr(args, k) for k in hyperparameter_names() if getattr(args, k) is not None}
    config = with_dataset_defaults(from_flags(args.arch, args.epochs, given), dataset.metadata, unset=unset_flags(given))
    seen = recipe_for(config, dataset).input  # as train.py's recipe: the architecture's input
    model, _ = train(config, load_training_data(dataset, device, seen), progress=False)
    test = engine.to_tensors(split.images["test"], split.labels["test"], device, seen)
    ours = engine.evaluate(model, test)["accuracy"]
    recipe_seconds = time.perf_counter() - started
    recipe = f"{', '.join(f'{k}={v}' for k, v in given.items())} (else default)" if given else "default recipe"
    rows = [(f"this project: {args.arch}, {recipe}, {config.epochs} epochs, augment {config.augment}", ours,
             recipe_seconds),
            *classical(split)]
    width = max(len(r[0]) for r in rows)
    print(f"{'model'.ljust(width)}  test accuracy  seconds")
    for label, accuracy, seconds in rows:
        print(f"{label.ljust(width)}  {accuracy:13.4f}  {seconds:7.1f}")
    best_classical = max(r[1] for r in rows[1:])
    print(f"recipe minus the best classical baseline: {100 * (ours - best_classical):+.2f} points")


if __name__ == "__main__":
    main()
