"""Training speed: the seeds' reference loop against the project's engine, in one process.

    python benchmarks/bench_train.py [--samples 6400] [--rounds 3]

Both sides train the same model from the same initial weights, on the same synthetic
MNIST-shaped data, at batch 64, for the same number of steps; rounds are interleaved so
machine drift hits both equally. Printed: median samples/s, the ratio, the fraction of
this machine's measured fp32 matmul peak, accuracy of both after the same steps, and the
cost of W&B logging as the scripts do it (once per epoch) relative to an epoch.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.models import build_model  # noqa: E402
from app.training import engine  # noqa: E402
from app.training.recipe import hyperparameters, make_recipe  # noqa: E402

BATCH = 64
CNN_FLOPS_PER_SAMPLE = 3 * 2 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 3136 * 128 + 128 * 10)  # fwd + bwd


def synthetic_mnist(n: int, seed: int):
    """Ten classes of noisy strokes in class-specific places: learnable, MNIST-shaped uint8."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 140, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        # a faint, jittered stroke: hard enough that 100 steps do not reach 100%
        r, c = divmod(int(label), 5)
        dr, dc = rng.integers(-3, 4, 2)
        top, left = max(0, 4 + r * 12 + dr), max(0, 2 + c * 5 + dc)
        images[i, top:top + 6, left:left + 3] = rng.integers(120, 200)
    return images, labels


def matmul_peak_gflops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        runs.append(10 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9)
    return max(runs)


class ItemDataset(Dataset):
    """The quickstart's way, as torchvision's MNIST does it: per item a PIL image, then ToTensor."""

    def __init__(self, images, labels):
        from torchvision.transforms import ToTensor

        self.data, self.targets, self.transform = torch.from_numpy(images), torch.from_numpy(labels), ToTensor()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.data[i].numpy(), mode="L")
        return self.transform(img), int(self.targets[i])


def reference_loop(model, images, labels, lr, seed) -> float:
    """The seeds' loop: DataLoader of ToTensor items, a torchmetrics call and .item() per batch."""
    import torchmetrics

    torch.manual_seed(seed)
    loader = DataLoader(ItemDataset(images, labels), batch_size=BATCH, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=10, average="micro")
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy(logits.argmax(1), y)
        loss.item()
    return time.perf_counter() - start


def engine_loop(model, images, labels, lr, seed) -> float:
    device = torch.device("cpu")
    model = engine.prepare(model, device)
    cl = engine.uses_channels_last(model)
    train = engine.to_tensors(images, labels, device, cl)
    val = engine.to_tensors(images[:BATCH], labels[:BATCH], device, cl)
    start = time.perf_counter()
    engine.fit(model, train, val, lr=lr, batch_size=BATCH, epochs=1, seed=seed, progress=False)
    return time.perf_counter() - start


def accuracy_of(model, images, labels) -> float:
    device = torch.device("cpu")
    data = engine.to_tensors(images, labels, device, engine.uses_channels_last(model))
    return engine.evaluate(model, data)["accuracy"]


def wandb_logging_cost(epoch_seconds: float) -> float:
    """Seconds of the scripts' per-epoch logging (one run.log of the epoch record), as a share of an epoch."""
    import os

    import wandb

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(mode="offline", dir=tmp, project="bench", settings=wandb.Settings(quiet=True, x_disable_stats=True))
        record = {"epoch": 1, "train/loss": 0.1, "train/accuracy": 0.9, "val/loss": 0.1, "val/accuracy": 0.9,
                  "val/best_accuracy": 0.9, "val/best_loss": 0.1, "samples_per_second": 1000.0}
        start = time.perf_counter()
        for epoch in range(20):
            run.log({**record, "epoch": epoch})
        per_epoch = (time.perf_counter() - start) / 20
        run.finish()
    return per_epoch / epoch_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=6400, help="training samples per measurement (steps = samples / 64)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    args = p.parse_args()

    torch.set_num_threads(torch.get_num_threads())
    images, labels = synthetic_mnist(args.samples, seed=0)
    test_images, test_labels = synthetic_mnist(2000, seed=1)
    peak = matmul_peak_gflops()
    print(f"machine: {torch.get_num_threads()} threads, fp32 matmul peak {peak:.1f} GFLOP/s, torch {torch.__version__}")
    print(f"data: {args.samples} synthetic 28x28 samples, batch {BATCH}, {args.samples // BATCH} steps, {args.rounds} rounds\n")

    epoch_seconds = None
    for arch in ("cnn", "mlp"):
        recipe = make_recipe(arch, hyperparameters(arch, {}), [1, 28, 28], [str(i) for i in range(10)],
                             {"ref": "bench", "digest": "", "name": "bench"})
        torch.manual_seed(0)
        initial = build_model(recipe)
        times = {"reference": [], "engine": []}
        final = {}
        for _ in range(args.rounds):
            for side, loop in (("reference", reference_loop), ("engine", engine_loop)):
                model = copy.deepcopy(initial)
                times[side].append(loop(model, images, labels, 1e-3, 0))
                final[side] = model
        rate = {side: args.samples / statistics.median(t) for side, t in times.items()}
        acc = {side: accuracy_of(final[side], test_images, test_labels) for side in final}
        print(f"{arch}: reference {rate['reference']:.0f} samples/s, engine {rate['engine']:.0f} samples/s, "
              f"ratio {rate['engine'] / rate['reference']:.2f}x")
        if arch == "cnn":
            for side in rate:
                print(f"  {side}: {rate[side] * CNN_FLOPS_PER_SAMPLE / 1e9 / peak:.0%} of matmul peak")
            epoch_seconds = 60000 * 0.7 * 0.1 / rate["engine"]  # an epoch of a 10% MNIST split (4,200 images)
        print(f"  accuracy after the same {args.samples // BATCH} steps: reference {acc['reference']:.4f}, "
              f"engine {acc['engine']:.4f} (difference {abs(acc['reference'] - acc['engine']) * 100:.2f} points)")
    share = wandb_logging_cost(epoch_seconds)
    print(f"\nW&B logging once per epoch: {share:.4%} of a CNN epoch on 4,200 images")


if __name__ == "__main__":
    main()
