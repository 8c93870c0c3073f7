"""train.py --stream: the split read from its files batch by batch in DataLoader workers
(app/training/streaming.py) trains and evaluates exactly as the split held in memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.errors import UserError
from app.models import build_model
from app.training import engine
from app.recipe import InputSpec
from app.recipe.config import TrainConfig, from_flags
from conftest import recipe_of
from app.data.shards import ShardedImages
from app.training.streaming import Stream

CPU = torch.device("cpu")
SEEN = InputSpec(3, (12, 12), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def colour_split(tmp_path, n=300, seed=0):
    """n 12x12 colour images whose class (of 3) is the brightest channel, saved as a split's file."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 120, (n, 12, 12, 3)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, :, :, label] += 120
    path = tmp_path / "train_images.npy"
    np.save(path, images)
    return path, images, labels


def fit(data, epochs=5):
    recipe = recipe_of(from_flags("convnet", epochs, {"width": 8}), [3, 12, 12], list("abc"), {})
    engine.seed_everything(0)
    model = engine.prepare(build_model(recipe), CPU)
    config = TrainConfig(epochs=epochs, batch_size=32, augment="crop-flip", seed=5)
    history = engine.fit(model, data, data, config, progress=False)
    return model, history


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_split_trains_bit_for_bit_as_the_split_in_memory(tmp_path, workers):
    path, images, labels = colour_split(tmp_path)
    in_memory, memory_history = fit(engine.to_tensors(images, labels, CPU, SEEN))
    streamed_data = Stream(ShardedImages([path]), labels, CPU, SEEN, workers)
    streamed, stream_history = fit(streamed_data)
    a, b = in_memory.state_dict(), streamed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same batches, values, augmentation and order
    assert [{k: v for k, v in r.items() if k != "samples_per_second"} for r in memory_history] == \
           [{k: v for k, v in r.items() if k != "samples_per_second"} for r in stream_history]
    assert stream_history[-1]["val/accuracy"] > 0.9
    assert engine.evaluate(streamed, streamed_data) == engine.evaluate(streamed, engine.to_tensors(images, labels, CPU, SEEN))
    assert streamed_data.sample_shape == [3, 12, 12] and len(streamed_data) == 300


def test_each_rank_streams_only_its_own_share_of_the_batches(tmp_path):
    path, images, labels = colour_split(tmp_path, n=64)
    stream = Stream(ShardedImages([path]), labels, CPU, None, 0)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    seen = [torch.cat([l for _, l in stream.batches(order[rank::2], 8)]) for rank in (0, 1)]
    assert torch.equal(seen[0], torch.from_numpy(labels)[order[0::2]]) and len(seen[1]) == 32


def test_a_damaged_or_mismatched_split_file_is_a_clear_error_naming_it(tmp_path):
    path, images, labels = colour_split(tmp_path, n=20)
    with pytest.raises(UserError, match="the split holds 20 images for 19 labels"):
        Stream(ShardedImages([path]), labels[:19], CPU, None, 0)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(UserError, match=r"train_images.npy of the dataset split is 200 bytes where its header says"):
        ShardedImages([path])
    path.write_bytes(b"not numpy at all")
    with pytest.raises(UserError, match="train_images.npy of the dataset split cannot be read"):
        ShardedImages([path])
    np.save(path, images.astype(np.float32))
    with pytest.raises(UserError, match="holds float32"):
        ShardedImages([path])


def test_train_stream_logs_the_very_model_the_in_memory_run_logs(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    first = ws.run("train", "--epochs", "2", "--width", "16", "--checkpoint-every", "0").stdout
    streamed = ws.run("train", "--epochs", "2", "--width", "16", "--checkpoint-every", "0", "--stream", "2").stdout
    assert "digits-convnet:v0" in first and "digits-convnet:v0" in streamed  # same files: the same version
    assert len(ws.versions("digits-convnet")) == 1


def test_evaluation_reads_the_split_from_its_file_in_chunks(tmp_path, monkeypatch):
    from app import inference

    path, images, labels = colour_split(tmp_path, n=50)
    recipe = recipe_of(from_flags("convnet", 1, {"width": 4}), [3, 12, 12], list("abc"), {}, preprocessing=SEEN)
    model = build_model(recipe)
    whole = inference.probabilities(model, images, CPU, recipe)
    monkeypatch.setattr(inference, "CHUNK", 16)  # 50 images: four chunks
    chunked = inference.probabilities(model, ShardedImages([path]), CPU, recipe)
    assert chunked.shape == (50, 3) and np.allclose(chunked, whole, atol=1e-6)
    assert inference.probabilities(model, images[:0], CPU, recipe).shape == (0, 3)
