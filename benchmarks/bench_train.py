"""Training speed: the seeds' reference loop against the project's engine, in one process.

    python benchmarks/bench_train.py [--samples 6400] [--rounds 5]
    python benchmarks/bench_train.py --device cuda [--precision auto|fp32|bf16] [--compile]

Both sides train the same model (architecture and initial weights) on the same synthetic
MNIST-shaped data, at batch 64, for the same number of steps. The reference is the seeds'
way: stock torch.nn layers, a DataLoader of per-item ToTensor images, Adam, a torchmetrics
call and `.item()` per batch. The engine is the project's: app/models layers, the split as
one tensor, fused Adam, one host sync per epoch. Rounds are interleaved, and each round
measures the machine's fp32 matmul peak too, so drift hits every side equally. Printed:
median samples/s, the ratio, the fraction of the peak measured in the same round, accuracy
of both after the same steps, and the cost of W&B logging as the scripts do it (once per
epoch) relative to an epoch. On a GPU (`--device cuda`) both sides run there (the reference
moves each DataLoader batch to the GPU, as the seeds do), and the engine uses what train.py
would: `--precision` and `--compile` as train.py takes them (app/training/engine.accelerate).

Then the default architecture (convnet) beside the original's CNN (cnn), each with its own
default recipe, on the README's own-images example: examples/make_shapes.py's coloured shapes
(`--colour-images`, 48x48, 70% train / 30% validation, crop-flip as data_prep picks for colour):
engine samples/s, and the seconds of training until the validation accuracy first reaches 95%
(both may train up to `--max-epochs`, on the cosine schedule over that many).
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
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.data.preprocessing import channel_stats  # noqa: E402
from app.models import build_model  # noqa: E402
from app.training import engine  # noqa: E402
from app.recipe.config import PRECISIONS, DeviceOptions, TrainConfig, from_flags  # noqa: E402
from app.recipe import InputSpec, Recipe  # noqa: E402
from offline_runs import offline_settings  # noqa: E402

BATCH = 64
CNN_FLOPS_PER_SAMPLE = 3 * 2 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 3136 * 128 + 128 * 10)  # fwd + bwd


def synthetic_mnist(n: int, seed: int):
    """Ten classes of a jittered stroke in class-specific places: MNIST-shaped uint8.

    Neighbouring places overlap, so even a perfect model stays near 77%. Both sides reach that
    within 100 steps, so their accuracies compare without the seed-to-seed spread of a
    half-trained model (about 2 points on a harder variant), yet a broken step would show.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 100, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 5)
        dr, dc = rng.integers(-3, 4, 2)
        top, left = max(0, 4 + r * 12 + dr), max(0, 2 + c * 5 + dc)
        images[i, top:top + 6, left:left + 3] = rng.integers(150, 256)
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


def seeds_model(arch: str, project_model: nn.Module) -> nn.Module:
    """The same model as the seeds build it, from stock torch.nn layers, with the project model's
    weights (the CNN in the keras original's order: ReLU, then max-pool)."""
    if arch == "mlp":  # the quickstart MLP: the project's is made of stock layers already
        return copy.deepcopy(project_model)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )
    model.load_state_dict(project_model.state_dict())
    return model


def reference_loop(model, images, labels, lr, seed, device, options) -> float:
    """The seeds' loop: DataLoader of ToTensor items, a torchmetrics call and .item() per batch."""
    import torchmetrics

    torch.manual_seed(seed)
    # the sampler's permutation is seeded as the engine's shuffle is: both sides see the same batches
    dataset = ItemDataset(images, labels)
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=10, average="micro").to(device)
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy(logits.argmax(1), y)
        loss.item()
    return time.perf_counter() - start


def engine_loop(model, images, labels, lr, seed, device, options) -> float:
    torch.manual_seed(seed)  # dropout draws, as the reference loop seeds them
    model = engine.prepare(model, device)
    train = engine.to_tensors(images, labels, device)
    val = engine.to_tensors(images[:BATCH], labels[:BATCH], device)
    start = time.perf_counter()
    engine.fit(model, train, val, TrainConfig(lr=lr, batch_size=BATCH, epochs=1, seed=seed),
               progress=False, acceleration=engine.accelerate(options, device, model))
    return time.perf_counter() - start


def accuracy_of(model, images, labels, device) -> float:
    data = engine.to_tensors(images, labels, device)
    return engine.evaluate(model, data)["accuracy"]


def wandb_logging_cost(epoch_seconds: float) -> float:
    """Seconds of the scripts' per-epoch logging (one run.log of the epoch record), as a share of an epoch."""
    import os

    import wandb

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(offline_settings(tmp))
        run = wandb.init(mode="offline", dir=tmp, project="bench", settings=wandb.Settings(quiet=True, x_disable_stats=True))
        record = {"epoch": 1, "train/loss": 0.1, "train/accuracy": 0.9, "val/loss": 0.1, "val/accuracy": 0.9,
                  "val/best_accuracy": 0.9, "val/best_loss": 0.1, "samples_per_second": 1000.0}
        start = time.perf_counter()
        for epoch in range(20):
            run.log({**record, "epoch": epoch})
        per_epoch = (time.perf_counter() - start) / 20
        run.finish()
    return per_epoch / epoch_seconds


def colour_shapes(n: int, size: int = 48, seed: int = 0):
    """n of examples/make_shapes.py's coloured shapes (4 classes, mixed sizes, some greyscale),
    brought to size x size RGB as data_prep does: uint8 (n, size, size, 3) and labels."""
    import random

    from PIL import Image

    from examples.make_shapes import CLASSES, draw_shape

    rng = random.Random(seed)
    labels = np.arange(n) % len(CLASSES)
    images = np.stack([
        np.asarray(draw_shape(CLASSES[label], rng, mode="L" if rng.random() > 0.9 else None).convert("RGB")
                   .resize((size, size), Image.BILINEAR))
        for label in labels])
    return images, labels


def time_to_accuracy(arch: str, images, labels, max_epochs: int, device, options, target: float = 0.95) -> dict:
    """Train `arch` with its default recipe (up to max_epochs) on 70% of the images, validating on
    the rest: seconds until the validation accuracy first reaches `target`, and samples/s."""
    cut = int(0.7 * len(images))
    mean, std = channel_stats(images[:cut])  # the training split's statistics, as data_prep records them
    seen = InputSpec(3, tuple(images.shape[1:3]), tuple(mean), tuple(std))
    train = engine.to_tensors(images[:cut], labels[:cut], device, seen)
    val = engine.to_tensors(images[cut:], labels[cut:], device, seen)
    config = from_flags(arch, max_epochs, {"augment": "crop-flip"})
    recipe = Recipe(config, InputSpec.plain([3, *images.shape[1:3]]), ("circle", "square", "triangle", "cross"))
    engine.seed_everything(0)
    model = engine.prepare(build_model(recipe), device)
    started = time.perf_counter()
    reached = {}

    def on_epoch(record):
        if record["val/accuracy"] >= target:
            reached.update(seconds=time.perf_counter() - started, epoch=record["epoch"])
            return True  # stop here: the time to the target is what is measured
        return False

    history = engine.fit(model, train, val, config, on_epoch=on_epoch, progress=False,
                         acceleration=engine.accelerate(options, device, model))
    return {"rate": statistics.median(r["samples_per_second"] for r in history),
            "best": max(r["val/accuracy"] for r in history), "epochs": len(history), **reached}


def default_versus_original(n_images: int, max_epochs: int, device, options) -> None:
    images, labels = colour_shapes(n_images)
    print(f"\ndefault architecture beside the original's, each with its default recipe: {n_images} coloured "
          f"shapes at 48x48 (examples/make_shapes.py), 70% train / 30% validation, up to {max_epochs} epochs")
    results = {arch: time_to_accuracy(arch, images, labels, max_epochs, device, options) for arch in ("convnet", "cnn")}
    for arch, r in results.items():
        reached = (f"95% validation accuracy after {r['seconds']:.1f} s (epoch {r['epoch']})" if "seconds" in r
                   else f"95% not reached in {r['epochs']} epochs (best {r['best']:.4f})")
        print(f"{arch}: {r['rate']:.0f} samples/s, {reached}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=6400, help="training samples per measurement (steps = samples / 64)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the MLP runs 3x); medians are reported")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="where both sides train")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="the engine's, as train.py's flag")
    p.add_argument("--compile", action="store_true", help="the engine through torch.compile, as train.py's flag")
    p.add_argument("--colour-images", type=int, default=1200,
                   help="coloured shapes for the default-versus-original comparison (0: skip it)")
    p.add_argument("--max-epochs", type=int, default=60, help="the most epochs each side of that comparison trains")
    p.add_argument("--test-images", type=int, default=5000, help="held-out synthetic samples each side's accuracy is on")
    args = p.parse_args()
    device = engine.pick_device(args.device)
    options = DeviceOptions(precision=args.precision, compile=args.compile)

    images, labels = synthetic_mnist(args.samples, seed=0)
    test_images, test_labels = synthetic_mnist(args.test_images, seed=1)
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"machine: {torch.get_num_threads()} threads, torch {torch.__version__}; device {device}{gpu}")
    print(f"data: {args.samples} synthetic 28x28 samples, batch {BATCH}, {args.samples // BATCH} steps, "
          f"{args.rounds} interleaved rounds (MLP: {3 * args.rounds})\n")

    epoch_seconds = None
    for arch in ("cnn", "mlp"):
        recipe = Recipe(from_flags(arch, 1, {}), InputSpec.plain([1, 28, 28]), tuple(str(i) for i in range(10)))
        torch.manual_seed(0)
        initial = build_model(recipe)
        print(f"{arch}: engine {engine.accelerate(options, device, initial).describe()}", flush=True)
        # warm-up, untimed: the first optimizer step imports torch._dynamo lazily (about 2 s);
        # with --compile, torch.compile compiles here (a full batch and the last, shorter one)
        reference_loop(seeds_model(arch, initial), images[:640], labels[:640], 1e-3, 0, device, options)
        engine_loop(copy.deepcopy(initial), images[:640 + BATCH // 2], labels[:640 + BATCH // 2], 1e-3, 0,
                    device, options)
        times = {"reference": [], "engine": []}
        accuracy = {"reference": [], "engine": []}
        peaks = []
        # The MLP's engine epoch lasts a third of a second, so a short burst of machine noise
        # moves one round's ratio a lot: it gets three times the rounds (they are cheap).
        rounds = args.rounds * (3 if arch == "mlp" else 1)
        for seed in range(rounds):  # a round per seed: batch order and dropout differ between rounds
            peaks.append(matmul_peak_gflops())
            for side, loop in (("reference", reference_loop), ("engine", engine_loop)):
                model = seeds_model(arch, initial) if side == "reference" else copy.deepcopy(initial)
                times[side].append(loop(model, images, labels, 1e-3, seed, device, options))
                accuracy[side].append(accuracy_of(model, test_images, test_labels, device))
        rate = {side: args.samples / statistics.median(t) for side, t in times.items()}
        acc = {side: statistics.mean(a) for side, a in accuracy.items()}
        ratios = sorted(r / e for r, e in zip(times["reference"], times["engine"]))
        print(f"{arch}: reference {rate['reference']:.0f} samples/s, engine {rate['engine']:.0f} samples/s, "
              f"ratio {rate['engine'] / rate['reference']:.2f}x (per round {ratios[0]:.2f}-{ratios[-1]:.2f}x)")
        if arch == "cnn":
            epoch_seconds = 60000 * 0.7 * 0.1 / rate["engine"]  # an epoch of a 10% MNIST split (4,200 images)
        if arch == "cnn" and device.type == "cpu":  # the peak is the CPU's
            peak = statistics.median(peaks)
            print(f"  fp32 matmul peak, median of the rounds: {peak:.0f} GFLOP/s (highest {max(peaks):.0f})")
            for side in rate:
                gflops = rate[side] * CNN_FLOPS_PER_SAMPLE / 1e9
                print(f"  {side}: {gflops:.0f} GFLOP/s = {gflops / peak:.0%} of the median peak "
                      f"({gflops / max(peaks):.0%} of the highest)")
        print(f"  accuracy after the same {args.samples // BATCH} steps, mean of the rounds: reference "
              f"{acc['reference']:.4f}, engine {acc['engine']:.4f} "
              f"(difference {abs(acc['reference'] - acc['engine']) * 100:.2f} points)")
    share = wandb_logging_cost(epoch_seconds)
    print(f"\nW&B logging once per epoch: {share:.4%} of a CNN epoch on 4,200 images")
    if args.colour_images:
        default_versus_original(args.colour_images, args.max_epochs, device, options)


if __name__ == "__main__":
    main()
