"""Streaming (train.py --stream) against the split held in memory, on sets that fit in memory.

    python benchmarks/bench_stream.py [--images 2000] [--rounds 3] [--workers N]

The same split file trains the default convnet both ways (app/training/streaming.py: memory map
and DataLoader workers; engine.Tensors: one tensor on the device), interleaved, for two epochs
a round; the second epoch's samples/s (workers already started) is compared. Both sides see
the same batches and end with the same weights (tests/test_streaming.py checks that bit for bit).

Then a split of references (data_prep --reference) loaded into memory for training: decoded in
this process against decoded by the DataLoader workers train.py starts for it (decode_workers),
interleaved, on `--reference-images` 64x64 JPEGs; both give the same array (checked).

Then memory: one epoch on `--memory-images` 64x64 colour images, each way in a process of its
own, with a tiny model (the data dominates): the training process's peak RSS (Linux: VmHWM),
and the largest DataLoader worker's (ru_maxrss: it counts the pages a worker shares with the
process it was forked from, and the file pages it has read, which the kernel can drop).
"""
from __future__ import annotations

import argparse
import gc
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.models import build_model  # noqa: E402
from app.training import engine  # noqa: E402
from app.recipe.config import DeviceOptions, TrainConfig, from_flags, stream_workers  # noqa: E402
from app.recipe import InputSpec, Recipe  # noqa: E402
from app.data.shards import ShardedImages  # noqa: E402
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

    recipe = Recipe(from_flags("convnet", 2, {}), InputSpec.plain(sample_shape), tuple(str(i) for i in range(10)))
    engine.seed_everything(seed)
    model = engine.prepare(build_model(recipe), torch.device("cpu"))
    config = TrainConfig(epochs=2, batch_size=64, seed=seed, augment="none")
    history = engine.fit(model, data, data, config, progress=False,
                         acceleration=engine.accelerate(DeviceOptions(), torch.device("cpu"), model))
    return history[-1]["samples_per_second"]


def peak_rss(path: Path, labels_path: Path, side: str, workers: int) -> None:
    """The child process of measure_memory: one epoch `side` ("memory" or "stream"), then print the peak RSS
    of this process and of its largest reaped child (a DataLoader worker), in MiB."""
    import torch

    cpu = torch.device("cpu")
    labels = np.load(labels_path)
    preprocessing = InputSpec(3, (64, 64), (0.5,) * 3, (0.25,) * 3)
    data = (engine.to_tensors(np.load(path), labels, cpu, preprocessing) if side == "memory"
            else Stream(ShardedImages([path]), labels, cpu, preprocessing, workers))
    recipe = Recipe(from_flags("mlp", 1, {"hidden": 8}), InputSpec.plain([3, 64, 64]), tuple(str(i) for i in range(10)))
    model = engine.prepare(build_model(recipe), cpu)
    engine.fit(model, data, data, TrainConfig(epochs=1, batch_size=256, augment="none"), progress=False)
    del data
    gc.collect()  # ends the loader's workers, so they count as reaped children
    # VmHWM: this process's own peak (ru_maxrss would keep the parent's from before the exec)
    own = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{own:.0f} {child:.0f}")


def measure_memory(n: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, images, labels = split_file(Path(tmp), n, (64, 64, 3))
        labels_path = Path(tmp) / "labels.npy"
        np.save(labels_path, labels)
        del images
        peaks = {}
        for side in ("memory", "stream"):
            out = subprocess.run([sys.executable, __file__, "--peak-rss", side, str(path), str(labels_path),
                                  "--workers", str(workers)], capture_output=True, text=True, check=True).stdout
            peaks[side] = [float(v) for v in out.split()[-2:]]
        print(f"peak RSS, one epoch on {n} 64x64 colour images ({n * 64 * 64 * 3 / 2**20:.0f} MiB as uint8): "
              f"in memory {peaks['memory'][0]:.0f} MiB; streamed {peaks['stream'][0]:.0f} MiB "
              f"(its largest worker {peaks['stream'][1]:.0f} MiB)")


def measure_reference_load(n: int, rounds: int) -> None:
    from PIL import Image

    from app.data.locations import location
    from app.data.references import ReferencedImages
    from app.data.loading import decode_workers, read_whole

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        names = [f"c{i % 4}/{i:06d}.jpg" for i in range(n)]
        for name in names:
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(Path(tmp) / name, quality=90)
        digests = location(tmp).digests(names)  # as data_prep --reference records them: each read is checked
        view = ReferencedImages({"root": tmp, "channels": 3, "size": [64, 64],
                                 "splits": {"train": [[name, digests[name]] for name in names]}}, "train")
        workers = decode_workers()
        seconds = {0: [], workers: []}
        for _ in range(rounds):
            for side in seconds:
                start = time.perf_counter()
                loaded = read_whole(view, side)
                seconds[side].append(time.perf_counter() - start)
        assert np.array_equal(loaded, read_whole(view, 0))
        here, pool = statistics.median(seconds[0]), statistics.median(seconds[workers])
        print(f"a split of {n} referenced 64x64 JPEGs into memory: decoded here {here:.2f} s, by {workers} "
              f"workers {pool:.2f} s, speed-up {here / pool:.2f}x")


def main() -> None:
    if "--peak-rss" in sys.argv:  # the child process of measure_memory
        side, path, labels_path = sys.argv[sys.argv.index("--peak-rss") + 1:][:3]
        return peak_rss(Path(path), Path(labels_path), side, int(sys.argv[-1]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="images per set")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    p.add_argument("--workers", type=int, default=stream_workers(), help="DataLoader workers (train.py --stream's default)")
    p.add_argument("--memory-images", type=int, default=20000, help="images of the memory measurement (0: skip it)")
    p.add_argument("--reference-images", type=int, default=10000,
                   help="JPEGs of the reference-split load (0: skip it)")
    args = p.parse_args()
    import torch

    cpu = torch.device("cpu")
    print(f"machine: {torch.get_num_threads()} threads; {args.images} images per set, {args.workers} streaming workers, "
          f"{args.rounds} interleaved rounds, samples/s of the second epoch (training and validation)")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ((28, 28), (64, 64, 3)):
            path, images, labels = split_file(Path(tmp), args.images, shape)
            sample_shape = [1 if len(shape) == 2 else 3, shape[0], shape[1]]
            preprocessing = InputSpec(sample_shape[0], tuple(sample_shape[1:]), (0.5,) * sample_shape[0],
                                      (0.25,) * sample_shape[0])
            rates = {"in memory": [], "streamed": []}
            for seed in range(args.rounds):
                rates["in memory"].append(samples_per_second(engine.to_tensors(images, labels, cpu, preprocessing),
                                                             sample_shape, seed))
                rates["streamed"].append(samples_per_second(Stream(ShardedImages([path]), labels, cpu, preprocessing, args.workers),
                                                            sample_shape, seed))
            memory, streamed = statistics.median(rates["in memory"]), statistics.median(rates["streamed"])
            print(f"{'x'.join(map(str, shape))}: in memory {memory:.0f} samples/s, streamed {streamed:.0f} samples/s, "
                  f"ratio {streamed / memory:.2f}")
    if args.reference_images:
        measure_reference_load(args.reference_images, args.rounds)
    if args.memory_images:
        measure_memory(args.memory_images, args.workers)


if __name__ == "__main__":
    main()
