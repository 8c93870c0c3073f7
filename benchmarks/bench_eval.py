"""Evaluation speed: the error-analysis pass against the naive per-example way, and predict.py.

    python benchmarks/bench_eval.py [--examples 10000] [--naive-examples 300]

Project way (evaluate.py): probabilities for all examples in large batches, metrics from
arrays, one table row per example with the uint8 image, logged once.
Naive way (the original's): per example a forward pass, a matplotlib figure saved as PNG
and a row. Its cost is linear, so it runs on a subset and both are compared per example.
Both tables are logged to an offline W&B run in a temp dir.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import synthetic_mnist  # noqa: E402

from app.evaluation import report  # noqa: E402
from app.evaluation.images import load_inputs  # noqa: E402
from app.inference import probabilities  # noqa: E402
from app.evaluation.metrics import classification_report  # noqa: E402
from app.models import build_model  # noqa: E402
from app.recipe.config import from_flags  # noqa: E402
from app.recipe import InputSpec, Recipe  # noqa: E402
from offline_runs import offline_settings  # noqa: E402

CLASSES = [str(i) for i in range(10)]


def project_way(run, model, recipe, images, labels) -> float:
    import wandb

    start = time.perf_counter()
    probs = probabilities(model, images, torch.device("cpu"), recipe)
    classification_report(probs, labels, 10)
    rows = report.error_rows(probs, labels, CLASSES, images, wandb.Image)
    run.log({"errors": wandb.Table(columns=report.error_columns(CLASSES, True), data=rows)})
    return time.perf_counter() - start


def naive_way(run, model, images, labels, folder: Path) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import wandb

    start = time.perf_counter()
    model.eval()
    rows = []
    for i in range(len(labels)):
        x = torch.from_numpy(images[i]).float().div(255).view(1, 1, 28, 28)
        with torch.no_grad():
            p = torch.softmax(model(x), 1)[0].numpy()
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"true {labels[i]} pred {p.argmax()}")
        path = folder / f"{i}.png"
        fig.savefig(path)
        plt.close(fig)
        rows.append([i, wandb.Image(str(path)), CLASSES[labels[i]], CLASSES[p.argmax()], float(p.max()),
                     bool(p.argmax() == labels[i]), *p.tolist()])
    run.log({"naive_errors": wandb.Table(columns=report.error_columns(CLASSES, True), data=rows)})
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=10_000)
    p.add_argument("--naive-examples", type=int, default=300)
    args = p.parse_args()

    import wandb
    from PIL import Image

    recipe = Recipe(from_flags("cnn", 1, {}), InputSpec.plain([1, 28, 28]), tuple(CLASSES))
    torch.manual_seed(0)
    model = build_model(recipe)
    images, labels = synthetic_mnist(args.examples, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(offline_settings(tmp))
        run = wandb.init(mode="offline", dir=tmp, project="bench", settings=wandb.Settings(quiet=True, x_disable_stats=True))
        naive_dir = Path(tmp) / "naive"
        naive_dir.mkdir()
        # interleaved: naive, project, naive, project; best of each
        naive, project = [], []
        for _ in range(2):
            naive.append(naive_way(run, model, images[:args.naive_examples], labels[:args.naive_examples], naive_dir)
                         / args.naive_examples)
            project.append(project_way(run, model, recipe, images, labels) / args.examples)
        run.finish()

        png_dir = Path(tmp) / "png"
        png_dir.mkdir()
        files = []
        for i in range(min(1000, len(images))):
            path = png_dir / f"{i}.png"
            Image.fromarray(images[i]).resize((56, 56)).save(path)
            files.append(str(path))
        start = time.perf_counter()
        _, batch = load_inputs(files, recipe)
        probabilities(model, batch, torch.device("cpu"), recipe)
        predict_rate = len(files) / (time.perf_counter() - start)

    n, m = min(naive), min(project)
    print(f"error-analysis pass, per example: naive {n * 1e3:.2f} ms, project {m * 1e3:.3f} ms")
    print(f"  {args.examples} examples: project {m * args.examples:.1f} s, naive (extrapolated) {n * args.examples:.1f} s, "
          f"ratio {n / m:.1f}x")
    print(f"predict.py path ({len(files)} PNG files, decode + resize + inference): {predict_rate:.0f} images/s")


if __name__ == "__main__":
    main()
