"""Sharded dataset splits (#22): shards round-trip, are deterministic, read as one array, name a
damaged shard, and go through data_prep, train (in memory and --stream) and evaluate."""
from __future__ import annotations

import csv
import json
import multiprocessing
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from app.data.imagefolder import decode, scan_image_folder
from app.data.preprocessing import channel_stats
from app.data.shards import ShardedImages
from app.data.sources import RawDataset, load_digits_28
from app.data.split import SPLITS, cross_split_duplicates, split_indices, stratified_split
from app.data.split_files import SHARDS_FILE, read_split, write_split
from app.errors import UserError


def shard_files(tmp_path, sizes=(5, 7, 1, 6), shape=(4, 3, 3)):
    rng = np.random.default_rng(0)
    whole = rng.integers(0, 256, (sum(sizes), *shape)).astype(np.uint8)
    files, start = [], 0
    for k, n in enumerate(sizes):
        files.append(tmp_path / f"part_{k}.npy")
        np.save(files[-1], whole[start:start + n])
        start += n
    return files, whole


def test_sharded_images_index_like_the_array_they_split(tmp_path):
    files, whole = shard_files(tmp_path)
    view = ShardedImages(files)
    assert len(view) == 19 and view.shape == whole.shape and view.ndim == 4 and view.dtype == np.uint8
    assert np.array_equal(view[:], whole) and np.array_equal(np.asarray(view), whole)
    for key in (0, 5, 12, 18, -1, -19):
        assert np.array_equal(view[key], whole[key])
    for key in (slice(3, 14), slice(4, 5), slice(12, 13), slice(0, 0), slice(17, 100), slice(1, 18, 4), slice(None, None, -3)):
        assert np.array_equal(view[key], whole[key]), key
    order = np.random.default_rng(1).integers(0, 19, 40)  # any order, repeats
    assert np.array_equal(view[order], whole[order]) and np.array_equal(view.take(order), whole[order])
    mask = np.arange(19) % 3 == 0
    assert np.array_equal(view[mask], whole[mask])
    with pytest.raises(IndexError):
        view[19]
    with pytest.raises(IndexError):
        view[np.array([3, 19])]
    view[0]  # descriptors opened
    copy = pickle.loads(pickle.dumps(view))  # as a DataLoader worker receives it: the file list
    assert len(pickle.dumps(view)) < 2000 and np.array_equal(copy[order], whole[order])


def test_a_damaged_or_foreign_shard_is_named(tmp_path):
    files, whole = shard_files(tmp_path)
    files[2].write_bytes(files[2].read_bytes()[:-1])
    with pytest.raises(UserError, match="part_2.npy of the dataset split is .* bytes where its header says"):
        ShardedImages(files)
    np.save(files[2], whole[:1, :2])  # another image size
    with pytest.raises(UserError, match=r"part_2.npy of the dataset split holds images of \(2, 3, 3\)"):
        ShardedImages(files)
    files[2].unlink()
    with pytest.raises(UserError, match="part_2.npy of the dataset split cannot be read"):
        ShardedImages(files)


def digits_split(seed=3):
    return stratified_split(load_digits_28(), 100, (70, 20, 10), seed=seed)


def test_shards_round_trip_deterministically_and_count_as_one_file_does(tmp_path):
    split = digits_split()
    one_file, whole = write_split(split, tmp_path / "one")
    sharded, writer = write_split(split, tmp_path / "sharded", shard_size=100)
    assert sorted(one_file) == sorted([f"{s}_{k}.npy" for s in SPLITS for k in ("images", "labels")] + ["classes.json"])
    listing = json.loads((tmp_path / "sharded" / SHARDS_FILE).read_text())
    assert listing["shard_size"] == 100
    assert [e["images"] for e in listing["splits"]["train"]] == [100] * 12 + [57]
    assert [e["file"] for e in listing["splits"]["test"]] == ["test_images_00000.npy", "test_images_00001.npy"]
    assert set(sharded) == {SHARDS_FILE, "classes.json"} | {f"{s}_labels.npy" for s in SPLITS} | \
        {e["file"] for s in SPLITS for e in listing["splits"][s]}
    for mapped in (False, True):
        back = read_split(tmp_path / "sharded", mapped=mapped)
        assert isinstance(back.images["train"], ShardedImages if mapped else np.ndarray)
        for s in SPLITS:
            assert np.array_equal(back.images[s][:], split.images[s]) and np.array_equal(back.labels[s], split.labels[s])
    # the statistics and the duplicate count, counted shard by shard, are the whole split's
    assert writer.stats.result() == whole.stats.result() == channel_stats(split.images["train"])
    assert writer.duplicates.duplicates == whole.duplicates.duplicates == cross_split_duplicates(split)
    again, _ = write_split(digits_split(), tmp_path / "again", shard_size=100)
    assert {n: p.read_bytes() for n, p in again.items()} == {n: p.read_bytes() for n, p in sharded.items()}


def test_duplicates_are_counted_across_shards_as_across_one_file():
    split = digits_split()
    split.images["val"][:4] = split.images["train"][:4]
    split.images["test"][7] = split.images["train"][900]  # in train's last shard
    split.images["test"][8] = split.images["test"][9]  # within one split: not leakage
    from app.data.split import DuplicateCounter

    counter = DuplicateCounter()
    for s in SPLITS:
        for start in range(0, len(split.labels[s]), 50):
            counter.add(s, split.images[s][start:start + 50])
    assert counter.duplicates == cross_split_duplicates(split) == 5


def test_splitting_positions_splits_the_images_the_same_way():
    raw = load_digits_28()
    for fraction in (100, 40):
        chosen = split_indices(raw.labels, raw.class_names, fraction, (70, 20, 10), seed=4)
        by_images = stratified_split(RawDataset("d", raw.images, raw.labels, raw.class_names, "x"), fraction,
                                     (70, 20, 10), seed=4)
        for s in SPLITS:
            assert np.array_equal(raw.images[chosen[s]], by_images.images[s])


def colour_folder(root, per_class=40, seed=0):
    """Three classes of colour PNGs of mixed sizes (the brightest channel is the class), one with
    a readable header and damaged pixels."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(14, 30, 2)
            pixels = rng.integers(0, 120, (h, w, 3)).astype(np.uint8)
            pixels[..., c] += 120
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    Image.open(root / "green" / "000.png").save(root / "green" / "truncated.jpg", quality=90)
    good = (root / "green" / "truncated.jpg").read_bytes()
    (root / "green" / "truncated.jpg").write_bytes(good[:len(good) // 2])  # a header, half the pixels


def test_a_pool_of_processes_decodes_as_this_process_does(tmp_path):
    colour_folder(tmp_path / "pics")
    scan = scan_image_folder(tmp_path / "pics", (12, 12), strict=False)
    indices = np.arange(len(scan.files))[::-1]
    alone, keep_alone, digests, signed_alone = decode(scan, indices, digests=True, signatures=True)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pooled, keep_pooled, pooled_digests, signed_pooled = decode(scan, indices, pool, digests=True, signatures=True)
    assert np.array_equal(alone, pooled) and np.array_equal(keep_alone, keep_pooled) and digests == pooled_digests
    # the signatures computed in the decoding processes are those of the files decoded, fitted by crop
    # where the split's rule (trim, the default) leaves black bars (image_files.BORDERED)
    from app.data.near_duplicates import signatures

    assert np.array_equal(signed_alone, signed_pooled)
    cropped = decode(scan_image_folder(tmp_path / "pics", (12, 12), strict=False, resize="crop"), indices)[0]
    assert scan.resize == "trim" and np.allclose(signed_pooled[keep_pooled], signatures(cropped[keep_pooled]), atol=1e-6)
    assert (~keep_alone).sum() == 1 and [s["file"] for s in scan.skipped] == ["green/truncated.jpg"] * 2
    from app.data.locations import file_md5_b64 as md5_b64

    assert digests[0] == md5_b64(scan.where.root / scan.files[indices[0]]) and decode(scan, indices[:2])[2] == [None, None]


def artifact_files(ws, collection, version=-1):
    entry = ws.versions(collection)[version]
    return entry, ws.store / "objects" / entry["digest"]


def test_a_sharded_folder_split_trains_streams_and_evaluates_as_one_file(workspace):
    """data_prep writes the folder as shards (same images, labels and statistics as one file per
    split, the same version when run again), train reads them in memory and with --stream to the
    same model, evaluate's tables cover every image, predict reads a shard file, and a damaged
    shard stops train and evaluate with its name."""
    ws = workspace
    colour_folder(ws.path / "pics")
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12", "--name", "single")
    out = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12",
                 "--shard-size", "16").stdout
    assert "pics-split:v0" in out and "shards of 16 images" in out
    single, single_dir = artifact_files(ws, "single-split")
    sharded, sharded_dir = artifact_files(ws, "pics-split")
    assert len(list(sharded_dir.glob("train_images_*.npy"))) == 6  # 83 training images
    a, b = read_split(single_dir), read_split(sharded_dir)
    for s in SPLITS:
        assert np.array_equal(a.images[s], b.images[s]) and np.array_equal(a.labels[s], b.labels[s])
    same_keys = ("split_sizes", "class_counts", "mean", "std", "image_shape", "skipped_files", "duplicates_across_splits")
    assert {k: single["metadata"][k] for k in same_keys} == {k: sharded["metadata"][k] for k in same_keys}
    assert sharded["metadata"]["shard_size"] == 16 and "shard_size" not in single["metadata"]
    assert [s["file"] for s in sharded["metadata"]["skipped_files"]] == ["green/truncated.jpg"]
    again = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12",
                   "--shard-size", "16").stdout
    assert "pics-split:v0" in again and len(ws.versions("pics-split")) == 1  # deterministic: same digest

    flags = ("--dataset", "pics", "--epochs", "4", "--checkpoint-every", "0")
    assert "pics-convnet:v0" in ws.run("train", *flags).stdout
    assert "pics-convnet:v0" in ws.run("train", *flags, "--stream", "1").stdout  # the same files, bit for bit
    ws.run("registry", "link", "pics-convnet:v0", "pics-convnet", "--alias", "to_evaluate")
    out = ws.run("evaluate", "--dataset", "pics").stdout
    evaluation, evaluation_dir = artifact_files(ws, "pics-convnet-evaluation")
    for s in ("val", "test"):
        with open(evaluation_dir / f"{s}_predictions.csv") as f:
            assert len(list(csv.reader(f))) - 1 == sharded["metadata"]["split_sizes"][s]
    assert evaluation["metadata"]["dataset_digest"] == sharded["digest"] and "test accuracy" in out
    shard = sharded_dir / "test_images_00000.npy"
    predicted = json.loads(ws.run("predict", "--model", "pics-convnet:v0", "--json", str(shard)).stdout)
    assert len(predicted["predictions"]) == sharded["metadata"]["split_sizes"]["test"]  # 12: one shard

    # a shard damaged in the store: named; no version logged, no alias moved
    def versions():
        return [(v["collection"], v["version"], v["digest"], sorted(v["aliases"])) for v in ws.registry()]

    before = versions()
    damaged = sharded_dir / "train_images_00003.npy"
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes()[:-5])
    for script, args in (("train", flags), ("evaluate", ("--dataset", "pics"))):
        proc = ws.run(script, *args, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "train_images_00003.npy" in proc.stderr
    assert versions() == before


def test_training_in_memory_is_refused_with_stream_named_when_the_split_would_not_fit(monkeypatch):
    import torch

    from app.data import memory

    monkeypatch.setattr(memory, "machine_memory", lambda: 10 * 2**20)  # a 10 MiB machine
    shapes = {"train": (1000, 32, 32, 3), "val": (300, 32, 32, 3)}  # 3.8 MiB uint8, 4x as float32
    with pytest.raises(UserError, match="more than half of this machine's memory.*Train with --stream"):
        memory.check_training_fits(shapes, torch.device("cpu"))
    memory.check_training_fits(shapes, torch.device("cuda"))  # floats on the GPU: the host holds uint8 only


def test_a_reference_split_leaves_the_images_where_they_are_and_names_a_changed_one(workspace):
    """data_prep --reference: the artifact holds labels, classes and references.json, one W&B
    reference per image (its MD5, as W&B computes it) recorded in the store too; the images read
    back are the ones a copied split holds; train (in memory and --stream) and evaluate work; a
    changed or missing source image stops train with its name and logs nothing."""
    from app.data.locations import file_md5_b64 as md5_b64

    ws = workspace
    colour_folder(ws.path / "pics")
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12", "--name", "copied")
    out = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12",
                 "--reference").stdout
    assert "pics-split:v0" in out and "images referenced in" in out
    entry, folder = artifact_files(ws, "pics-split")
    assert sorted(p.name for p in folder.iterdir()) == ["classes.json", "references.json", "test_labels.npy",
                                                         "train_labels.npy", "val_labels.npy"]
    records = next(json.loads(p.read_text()) for p in (ws.store / "collections").rglob("pics-split.json"))
    references = records["versions"][0]["references"]
    assert len(references) == sum(entry["metadata"]["split_sizes"].values()) == entry["metadata"]["references"]["images"]
    name, reference = next(iter(sorted(references.items())))
    source = ws.path / "pics" / name.removeprefix("images/")
    assert reference["uri"] == source.resolve().as_uri() and reference["digest"] == md5_b64(source)
    copied, copied_folder = artifact_files(ws, "copied-split")
    a, b = read_split(copied_folder), read_split(folder)
    for s in SPLITS:
        assert np.array_equal(a.images[s], b.images[s]) and np.array_equal(a.labels[s], b.labels[s])
    assert entry["metadata"]["mean"] == copied["metadata"]["mean"]
    again = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12", "--reference")
    assert "pics-split:v0" in again.stdout  # same files, same references: same digest

    flags = ("--dataset", "pics", "--epochs", "3", "--checkpoint-every", "0")
    assert "pics-convnet:v0" in ws.run("train", *flags).stdout
    assert "pics-convnet:v0" in ws.run("train", *flags, "--stream", "1").stdout  # decoded in the worker, same model
    assert "test accuracy" in ws.run("evaluate", "--model", "pics-convnet:v0", "--no-generate-images").stdout

    before = [(v["collection"], v["version"], v["digest"], sorted(v["aliases"])) for v in ws.registry()]
    Image.open(source).rotate(90).save(source)
    other = sorted(references)[1].removeprefix("images/")
    (ws.path / "pics" / other).unlink()
    proc = ws.run("train", *flags, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"1 changed since the split was logged ({name.removeprefix('images/')})" in proc.stderr
    assert f"1 missing ({other})" in proc.stderr and "data_prep.py --reference" in proc.stderr
    assert [(v["collection"], v["version"], v["digest"], sorted(v["aliases"])) for v in ws.registry()] == before
    changed = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "pics", "--image-size", "12", "--reference")
    assert "pics-split:v1" in changed.stdout  # a changed folder is a new version


def test_wandb_records_each_reference_with_its_checksum_and_a_changed_file_changes_the_digest(tmp_path):
    """The artifact W&B uploads online (and `wandb sync` later): the SDK's own reference entries."""
    from app.data.locations import file_md5_b64 as md5_b64
    from app.tracking.backends import build_wandb_artifact

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(image)
    labels = tmp_path / "train_labels.npy"
    np.save(labels, np.zeros(1, np.int64))

    def built():
        return build_wandb_artifact("x-split", "dataset", {"train_labels.npy": labels}, {},
                                    {"images/a.png": image.as_uri()})

    from app.tracking.sdk_internals import reference_digests

    art = built()
    entry = art.manifest.entries["images/a.png"]  # the internal reference_digests reads: fails when it changes
    assert entry.ref == image.as_uri() and entry.digest == md5_b64(image)
    assert reference_digests(art, {"images/a.png": image.as_uri()}) == \
        {"images/a.png": {"uri": image.as_uri(), "digest": md5_b64(image)}}
    assert reference_digests(object(), {"images/a.png": image.as_uri()}) == \
        reference_digests(art, {"images/a.png": image.as_uri()})  # the fallback, with no manifest to read
    first = art.digest
    Image.fromarray(np.ones((4, 4), np.uint8)).save(image)
    assert built().digest != first


def test_evaluation_reads_a_split_view_in_dataloader_workers_as_in_this_process(tmp_path):
    """evaluate.py's inference over a sharded or referenced split: batches read (and decoded) by
    DataLoader workers give the very probabilities of reading them here."""
    from app.inference import probabilities
    from app.models import build_model
    from app.recipe.config import from_flags
    from conftest import recipe_of

    files, whole = shard_files(tmp_path, sizes=(700, 300, 1100), shape=(6, 6, 3))
    view = ShardedImages(files)
    recipe = recipe_of(from_flags("convnet", 1, {"width": 4}), [3, 6, 6], list("abc"), {})
    model = build_model(recipe)
    here = probabilities(model, view, torch.device("cpu"), recipe)
    assert np.array_equal(probabilities(model, view, torch.device("cpu"), recipe, workers=2), here)
    assert np.allclose(probabilities(model, whole, torch.device("cpu"), recipe), here, atol=1e-6)


def test_two_ranks_stream_disjoint_images_that_cover_a_sharded_split(tmp_path):
    """Under torchrun each rank takes `order[rank::world]` of the epoch's shuffle: across the
    shards, the ranks read disjoint images and together every one (the torchrun test in
    test_distributed runs 2 gloo processes on a sharded split)."""
    from app.training.streaming import Stream

    files, whole = shard_files(tmp_path, sizes=(10, 7, 13, 2), shape=(4, 4))
    labels = np.arange(32)  # each image's label is its index: what a rank read is what it saw
    stream = Stream(ShardedImages(files), labels, torch.device("cpu"), None, 1)
    order = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    seen = []
    for rank in (0, 1):
        batches = list(stream.batches(order[rank::2], 5))
        for images, batch_labels in batches:
            assert torch.equal(images[:, 0], torch.from_numpy(whole[batch_labels.numpy()]).float() / 255)
        seen.append(set(torch.cat([l for _, l in batches]).tolist()))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(32))


def recorded(root, names) -> list[list[str]]:
    """[file, digest] of each name, as data_prep --reference records a folder's files."""
    from app.data.locations import location

    digests = location(root).digests(names)
    return [[n, digests[n]] for n in names]


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_gone_while_streaming_is_a_clear_error_from_a_worker_too(tmp_path, workers):
    """A source image removed after the split was checked: the worker's error reaches the main
    process as a UserError naming the file, without the worker's traceback."""
    from app.data.references import ReferencedImages
    from app.inference import probabilities
    from app.models import build_model
    from app.recipe.config import from_flags
    from conftest import recipe_of
    from app.training.streaming import Stream

    colour_folder(tmp_path / "pics", per_class=4)
    names = sorted(p.relative_to(tmp_path / "pics").as_posix() for p in (tmp_path / "pics").rglob("*.png"))
    listing = {"root": str(tmp_path / "pics"), "channels": 3, "size": [8, 8], "splits": {"train": recorded(tmp_path / "pics", names)}}
    view = ReferencedImages(listing, "train")
    stream = Stream(view, np.zeros(len(names), np.int64), torch.device("cpu"), None, workers)
    assert len(list(stream.batches(torch.arange(len(names)), 4))) == 3
    (tmp_path / "pics" / names[5]).unlink()
    with pytest.raises(UserError) as raised:
        list(stream.batches(torch.arange(len(names)), 4))
    assert names[5] in str(raised.value) and "cannot be read now" in str(raised.value)
    assert "Traceback" not in str(raised.value)
    recipe = recipe_of(from_flags("convnet", 1, {"width": 4}), [3, 8, 8], list("abc"), {})
    with pytest.raises(UserError, match="cannot be read now") as raised:
        probabilities(build_model(recipe), view, torch.device("cpu"), recipe, workers=workers)
    assert "Traceback" not in str(raised.value)


def test_a_reference_split_is_decoded_into_memory_by_workers_as_here(tmp_path, monkeypatch):
    """train's in-memory load: a split of references decoded by DataLoader workers gives the very
    array of decoding here; a split's own files are read here (no loader started)."""
    from app.data.references import ReferencedImages
    from app.data import loading as streaming

    colour_folder(tmp_path / "pics", per_class=30)
    names = sorted(p.relative_to(tmp_path / "pics").as_posix() for p in (tmp_path / "pics").rglob("*.png"))
    view = ReferencedImages({"root": str(tmp_path / "pics"), "channels": 3, "size": [10, 10],
                             "splits": {"train": recorded(tmp_path / "pics", names)}}, "train")
    assert np.array_equal(streaming.read_whole(view, 2, batch_size=16), view[:])
    files, whole = shard_files(tmp_path)
    monkeypatch.setattr(streaming, "read_in_order", None)  # a loader for shards would fail here
    assert np.array_equal(streaming.read_whole(ShardedImages(files), 2), whole)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "64")
    assert streaming.decode_workers() == 1  # torchrun's ranks on this machine share its cores
