"""Streaming (train.py --stream) against the split held in memory, on sets that fit in memory.

    python benchmarks/bench_stream.py [--images 2000] [--rounds 3] [--workers N]

The same split file trains the default convnet both ways (app/training/streaming.py: memory map
and DataLoader workers; engine.Tensors: one tensor on the device), interleaved, for two epochs
a round; the second epoch's samples/s (workers already started) is compared. Both sides see
the same batches and end with the same weights (tests/test_streaming.py checks that bit for bit).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.models import build_model  # noqa: E402
from app.training import engine  # noqa: E402
from app.training.config import DeviceOptions, TrainConfig, from_flags, stream_workers  # noqa: E402
from app.training.recipe import make_recipe  # noqa: E402
from app.training.streaming import Stream  # noqa: E402


def split_file(folder: Path, n: int, shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    path = folder / f"images_{'x'.join(map(str, shape))}.npy"
    np.save(path, images)
    return path, images, labels


def samples_per_second(data, sample_shape: list[int], seed: int) -> float:
    import torch

    recipe = make_recipe(from_flags("convnet", 2, {}), sample_shape, [str(i) for i in range(10)], {})
    engine.seed_everything(seed)
    model = engine.prepare(build_model(recipe), torch.device("cpu"))
    config = TrainConfig(epochs=2, batch_size=64, seed=seed, augment="none")
    history = engine.fit(model, data, data, config, progress=False,
                         acceleration=engine.accelerate(DeviceOptions(), torch.device("cpu"), model))
    return history[-1]["samples_per_second"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="images per set")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--workers", type=int, default=stream_workers(), help="DataLoader workers (train.py --stream's default)")
    args = p.parse_args()
    import torch

    cpu = torch.device("cpu")
    print(f"machine: {torch.get_num_threads()} threads; {args.images} images per set, {args.workers} streaming workers, "
          f"{args.rounds} interleaved rounds, samples/s of the second epoch (training and validation)")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ((28, 28), (64, 64, 3)):
            path, images, labels = split_file(Path(tmp), args.images, shape)
            sample_shape = [1 if len(shape) == 2 else 3, shape[0], shape[1]]
            preprocessing = {"channels": sample_shape[0], "mean": [0.5] * sample_shape[0], "std": [0.25] * sample_shape[0]}
            rates = {"in memory": [], "streamed": []}
            for seed in range(args.rounds):
                rates["in memory"].append(samples_per_second(engine.to_tensors(images, labels, cpu, preprocessing),
                                                             sample_shape, seed))
                rates["streamed"].append(samples_per_second(Stream(path, labels, cpu, preprocessing, args.workers),
                                                            sample_shape, seed))
            memory, streamed = statistics.median(rates["in memory"]), statistics.median(rates["streamed"])
            print(f"{'x'.join(map(str, shape))}: in memory {memory:.0f} samples/s, streamed {streamed:.0f} samples/s, "
                  f"ratio {streamed / memory:.2f}")


if __name__ == "__main__":
    main()
