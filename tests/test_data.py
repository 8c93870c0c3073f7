"""Data sources, the stratified split, reproducible files and the leakage check."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from app.data.sources import load_dataset, load_digits_28
from app.data.split import Split, check_sizes, cross_split_duplicates, stratified_split
from app.data.split_files import read_split, write_split
from app.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import make_mnist_like  # noqa: E402
from make_mnist_like import write_idx  # noqa: E402


def test_digits_are_28x28_uint8_with_ten_classes():
    raw = load_digits_28()
    assert raw.images.shape == (1797, 28, 28) and raw.images.dtype == np.uint8
    assert raw.images.max() > 200
    assert raw.class_names == [str(i) for i in range(10)]


def test_split_is_stratified_sized_and_disjoint():
    raw = load_digits_28()
    split = stratified_split(raw, 100, (70, 20, 10), seed=1)
    sizes = split.sizes()
    assert sum(sizes.values()) == 1797
    assert abs(sizes["train"] - 0.7 * 1797) <= 1 and abs(sizes["test"] - 0.1 * 1797) <= 2
    overall = np.bincount(raw.labels) / len(raw.labels)
    for name in ("train", "val", "test"):
        share = np.bincount(split.labels[name], minlength=10) / sizes[name]
        assert np.abs(share - overall).max() < 0.02


def test_fraction_samples_per_class():
    split = stratified_split(load_digits_28(), 50, (70, 20, 10), seed=0)
    assert abs(sum(split.sizes().values()) - 1797 * 0.5) <= 1


@pytest.mark.parametrize("sizes", [[70, 20, 20], [100, 0, 0], [50, 50]])
def test_sizes_must_be_three_positive_summing_to_100(sizes):
    with pytest.raises(UserError, match="summing to 100"):
        check_sizes(sizes)


def test_files_are_byte_identical_for_the_same_split(tmp_path):
    raw = load_digits_28()
    digests = []
    for run in range(2):
        files, _ = write_split(stratified_split(raw, 100, (70, 20, 10), seed=3), tmp_path / str(run))
        digests.append({n: hashlib.md5(p.read_bytes()).hexdigest() for n, p in files.items()})
    assert digests[0] == digests[1]
    back = read_split(tmp_path / "0")
    assert back.class_names == raw.class_names and back.images["train"].dtype == np.uint8


def test_duplicates_across_splits_are_counted():
    img = np.zeros((3, 28, 28), np.uint8)
    img[1, 0, 0] = 1
    split = Split(images={"train": img[:2], "val": img[:1], "test": img[1:3]},
                  labels={s: np.zeros(2 if s != "val" else 1, np.int64) for s in ("train", "val", "test")},
                  class_names=["a"])
    # val[0] == train[0]; test[0] == train[1]; test[1] (all zero) == train[0]
    assert cross_split_duplicates(split) == 3


def test_mnist_loads_through_torchvision_from_raw_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    raw_dir = tmp_path / "MNIST" / "raw"
    train_x, test_x = (rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for n in (50, 20))
    train_y, test_y = np.arange(50) % 10, np.arange(20) % 10
    write_idx(raw_dir, "train", train_x, train_y)
    write_idx(raw_dir, "t10k", test_x, test_y)
    raw = load_dataset("mnist", tmp_path, download=False)
    assert raw.images.shape == (70, 28, 28)
    assert np.array_equal(raw.images[:50], train_x) and np.array_equal(raw.labels[50:], test_y)
    assert len(raw.class_names) == 10


def test_mnist_like_example_writes_centred_digits_that_load_as_mnist(tmp_path):
    from scipy import ndimage

    raw_dir = make_mnist_like.make(tmp_path, train=200, test=50, seed=3)
    raw = load_dataset("mnist", tmp_path, download=False)
    assert raw.images.shape == (250, 28, 28) and raw.images.dtype == np.uint8
    assert set(raw.labels.tolist()) == set(range(10)) and raw.light_on_dark
    centres = np.array([ndimage.center_of_mass(img.astype(float)) for img in raw.images])
    assert np.abs(centres - 13.5).max() < 1.0  # centred by mass, as MNIST's digits are
    assert (raw.images.max(axis=(1, 2)) == 255).all() and (raw.images[:, 0, :] == 0).mean() > 0.9
    again = make_mnist_like.make(tmp_path / "again", train=200, test=50, seed=3)
    assert (again / "train-images-idx3-ubyte").read_bytes() == (raw_dir / "train-images-idx3-ubyte").read_bytes()


def test_missing_mnist_without_download_names_the_fixes(tmp_path):
    with pytest.raises(UserError, match="--data-dir.*--dataset digits"):
        load_dataset("mnist", tmp_path, download=False)
