"""Augmentation on the device: a shift within the padding and a mirror, labels untouched,
never at evaluation."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.training import engine
from app.training.augment import augment_batch, padding_for
from app.recipe.config import TrainConfig


def test_crop_is_a_shift_within_the_padding_and_flip_a_mirror():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16)
    pad = padding_for(16, 16)
    padded = F.pad(x, (pad, pad, pad, pad))
    for kind in ("crop", "crop-flip"):
        out = augment_batch(x, kind)
        assert out.shape == x.shape and out.is_contiguous()
        mirrored = 0
        for i in range(len(x)):
            candidates = [padded[i, :, dy:dy + 16, dx:dx + 16] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
            if any(torch.equal(out[i], c) for c in candidates):
                continue
            assert kind == "crop-flip" and any(torch.equal(out[i], c.flip(2)) for c in candidates)
            mirrored += 1
        assert (mirrored > 10) == (kind == "crop-flip")  # about half are mirrored with crop-flip
    assert augment_batch(x, "none") is x


def test_augmentation_changes_training_batches_only_never_labels_or_evaluation(monkeypatch):
    """fit's batches are augmented with their own labels; evaluate sees the stored images."""
    seen = []
    from app.training import augment as module

    real = module.augment_batch

    def spy(images, kind):
        out = real(images, kind)
        seen.append((images.clone(), out.clone(), kind))
        return out

    monkeypatch.setattr(engine, "augment_batch", spy)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(40) % 4
    train = engine.to_tensors(images, labels, torch.device("cpu"))
    val = engine.to_tensors(images[:8], labels[:8], torch.device("cpu"))
    labels_before = train.labels.clone()
    from app.models import build

    model = build("mlp", [3, 12, 12], 4, {"hidden": 16})
    engine.fit(model, train, val, TrainConfig(lr=1e-3, batch_size=16, epochs=1, seed=0, augment="crop-flip"),
               progress=False)
    assert len(seen) == 3 and all(kind == "crop-flip" for _, _, kind in seen)
    assert any(not torch.equal(before, after) for before, after, _ in seen)
    assert torch.equal(train.labels, labels_before)
    calls = len(seen)
    engine.evaluate(model, val)
    engine.predict_logits(model, val)
    assert len(seen) == calls  # evaluation never augments
