"""Augmentation on the device: a shift within the padding and a mirror, labels untouched,
never at evaluation."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.training import engine
from app.training.augment import GREY_SHARE, LUMA, augment_batch, padding_for
from app.recipe import InputSpec
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


def test_crop_flip_grey_turns_some_colour_images_greyscale_as_data_prep_stores_a_greyscale_file():
    """crop-flip-grey: crop-flip's shifts and mirrors (the same draws), then GREY_SHARE of the colour
    images turned greyscale in pixel units (each channel the luma, as Pillow's "L" file reads back
    as RGB) and normalised again by the set's own per-channel mean and std."""
    spec = InputSpec(channels=3, size=(16, 16), mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (spec.mean, spec.std))
    x = (torch.rand(800, 3, 16, 16, generator=torch.Generator().manual_seed(1)) - mean) / std
    torch.manual_seed(0)
    cropped = augment_batch(x, "crop-flip", spec)
    torch.manual_seed(0)
    out = augment_batch(x, "crop-flip-grey", spec)
    kept = (out == cropped).flatten(1).all(1)
    pixels, before = out * std + mean, cropped * std + mean
    luma = (before * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1)
    grey = (pixels - luma[:, None]).abs().flatten(1).amax(1) < 1e-5
    assert (kept | grey).all() and not (kept & grey).any()
    assert abs(int(grey.sum()) - GREY_SHARE * len(x)) < 40  # about 100 of 800
    # greyscale images have no colour to take away: crop-flip's own draws
    g = x[:, :1]
    torch.manual_seed(0)
    alone = augment_batch(g, "crop-flip")
    torch.manual_seed(0)
    assert torch.equal(augment_batch(g, "crop-flip-grey"), alone)


def test_data_prep_picks_crop_flip_grey_for_a_colour_folder_with_greyscale_files(workspace):
    rng = np.random.default_rng(0)
    from PIL import Image

    for name in ("warm", "cold"):
        (workspace.path / "colours" / name).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(workspace.path / "colours" / name / f"{i}.png")
    workspace.run("data_prep", "--dataset", "imagefolder", "--data-dir", "colours", "--no-near-duplicates")
    assert workspace.versions("colours-split")[-1]["metadata"]["augment"] == "crop-flip"  # all colour
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(workspace.path / "colours" / "warm" / "grey.png")
    workspace.run("data_prep", "--dataset", "imagefolder", "--data-dir", "colours", "--no-near-duplicates")
    assert workspace.versions("colours-split")[-1]["metadata"]["augment"] == "crop-flip-grey"  # 1 of 81 greyscale


def test_augmentation_changes_training_batches_only_never_labels_or_evaluation(monkeypatch):
    """fit's batches are augmented with their own labels; evaluate sees the stored images."""
    seen = []
    from app.training import augment as module

    real = module.augment_batch

    def spy(images, kind, spec=None):
        out = real(images, kind, spec)
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
