"""Hostile and damaged inputs (issue #26): each gets one paragraph naming the fix (or the
documented skip), a non-zero exit, no traceback, and the store unchanged; images load upright
and at their real brightness."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.data import image_files
from app.data.imagefolder import load_image_folder
from app.errors import UserError
from conftest import SCRIPTS


def write_bomb(path: Path, side: int = 30000) -> None:
    """A real PNG whose header claims side x side pixels (900 M at 30000): Pillow refuses to
    decode more than twice its MAX_IMAGE_PIXELS. The file itself is a few bytes."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", side, side)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the chunk's CRC over type + data
    path.write_bytes(bytes(data))


def small_folder(root: Path, classes=("a", "b"), per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        folder = root / os.fsdecode(name) if isinstance(name, bytes) else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (8, 8)).astype(np.uint8) + np.uint8(120 * c)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def assert_clean_refusal(proc, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


@pytest.fixture
def production(trained_copy):
    """The session's trained digits model as production, in a private store."""
    trained_copy.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    return trained_copy


def digit_png(path: Path) -> Path:
    Image.fromarray((np.eye(8) * 255).astype(np.uint8)).resize((32, 32)).save(path)
    return path


# 1. decompression bombs ---------------------------------------------------------------------

def test_a_decompression_bomb_is_skipped_by_data_prep_and_refused_by_predict(workspace, production, tmp_path):
    folder = small_folder(tmp_path / "pics")
    write_bomb(folder / "a" / "bomb.png")
    workspace.run("data_prep", "--dataset", "imagefolder", "--data-dir", str(folder))
    [split] = workspace.versions("pics-split")
    assert [s["file"] for s in split["metadata"]["skipped_files"]] == ["a/bomb.png"]
    assert "decompression bomb" in split["metadata"]["skipped_files"][0]["reason"]
    with pytest.raises(UserError, match="--strict refuses"):
        load_image_folder(folder, None, strict=True)

    before = production.store_snapshot()
    proc = production.run("predict", "--strict", str(folder / "a" / "bomb.png"), str(folder / "a" / "0.png"), check=False)
    assert_clean_refusal(proc, "bomb.png is not an image this can read", "decompression bomb")
    assert production.store_snapshot() == before
    # without --strict (#36): the others are predicted, the bomb listed at the end with its reason
    proc = production.run("predict", str(folder / "a" / "bomb.png"), str(folder / "a" / "0.png"))
    assert proc.stdout.splitlines() == [f"{folder / 'a' / '0.png'}: " + proc.stdout.split(": ", 1)[1].strip()]
    assert "skipped 1 file(s) that could not be read" in proc.stderr
    assert re.search(r"bomb\.png: .*decompression bomb", proc.stderr) and "Traceback" not in proc.stderr
    as_json = json.loads(production.run("predict", "--json", str(folder / "a")).stdout)
    assert [s["input"] for s in as_json["skipped"]] == [str(folder / "a" / "bomb.png")]
    assert len(as_json["predictions"]) == 12


# 2. a read-only store -----------------------------------------------------------------------

def read_only_command(store: Path, argv: list[str]) -> list[str]:
    """argv run with `store` bind-mounted read-only in a private mount namespace (as a read-only
    network share or a colleague's folder would be); root ignores permission bits, not this."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(store), *argv]


def can_mount_read_only(tmp: Path) -> bool:
    tmp.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(read_only_command(tmp, ["sh", "-c", "! touch \"$0/x\" 2>/dev/null", str(tmp)]),
                           capture_output=True)
    return probe.returncode == 0 and shutil.which("unshare") is not None


def test_a_read_only_store_serves_predict_and_refuses_data_prep_before_its_run(production, tmp_path):
    if not can_mount_read_only(tmp_path / "probe"):
        pytest.skip("needs unshare and mount (root in a mount namespace) to make a read-only store")
    ws = production
    before, runs_before = ws.store_snapshot(), len(ws.run_dirs())
    digit = digit_png(tmp_path / "digit.png")
    predict = subprocess.run(read_only_command(ws.store, [sys.executable, str(SCRIPTS / "predict.py"), str(digit)]),
                             cwd=ws.path, env=ws.env, capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert f"{digit}: " in predict.stdout and "is read-only, so this use of" in predict.stderr

    prep = subprocess.run(read_only_command(ws.store, [sys.executable, str(SCRIPTS / "data_prep.py"),
                                                       "--dataset", "digits"]),
                          cwd=ws.path, env=ws.env, capture_output=True, text=True, timeout=300)
    assert_clean_refusal(prep, "cannot be written", "PIPELINE_STORE_DIR")
    assert "loading" not in prep.stderr  # refused before the data is read
    assert ws.store_snapshot() == before and len(ws.run_dirs()) == runs_before + 1  # predict's run only


def test_a_store_that_cannot_be_written_is_a_user_error(tmp_path, monkeypatch):
    from app.tracking.store import ReadOnlyStore, Store

    store = Store(tmp_path / "store")
    real_open = open

    def refusing_open(path, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(30, "Read-only file system")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refusing_open)
    with pytest.raises(ReadOnlyStore, match="Read-only file system.*PIPELINE_STORE_DIR"):
        store.check_writable()


# 3. a damaged collection index --------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "not-an-index", "not-utf8"])
def test_a_damaged_collection_index_is_refused_with_its_path(trained_copy, damage):
    ws = trained_copy
    index = next((ws.store / "collections").rglob("digits-split.json"))
    text = index.read_bytes()
    index.write_bytes({"truncated": text[: len(text) // 2], "not-an-index": b"[1, 2, 3]",
                       "not-utf8": b"\xff\xfe" + text}[damage])
    steps = [("registry", ["list"])] + ([("train", ["--dataset", "digits", "--epochs", "1"])] if damage == "truncated" else [])
    for script, args in steps:
        before = ws.store_snapshot()
        proc = ws.run(script, *args, check=False)
        assert_clean_refusal(proc, f"index {index} is damaged", "Restore it from a backup")
        assert ws.store_snapshot() == before


def test_a_damaged_sweep_index_is_refused(tmp_path):
    from app.tracking.store import Store
    from app.tracking.sweep_controller import LocalSweeps

    sweeps = LocalSweeps(Store(tmp_path))
    sweep_id = sweeps.create({"method": "random", "parameters": {}})
    path = tmp_path / "sweeps" / f"{sweep_id}.json"
    path.write_text(path.read_text()[:-10])
    with pytest.raises(UserError, match=f"sweep index {path} is damaged"):
        sweeps.read(sweep_id)


# 4. absurd sizes in a recipe ----------------------------------------------------------------

@pytest.mark.parametrize("model, phrase", [
    ({"dense": 10**9}, "dense=1000000000 is out of range"),
    ({"dense": -5}, "dense=-5 is out of range"),
    ({"dense": 4096}, "weights) is out of range"),  # each size in range, their product is not
    ({"dropout_1": 5.0}, "dropout_1=5.0 is out of range"),
    ({"dense": "128"}, "dense='128' is out of range"),
])
def test_a_recipe_with_absurd_sizes_is_refused_before_torch_allocates(tmp_path, model, phrase):
    from app.recipe.config import model_defaults
    from app.models.files import WEIGHTS_FILE, load_model
    from app.recipe import RECIPE_FILE

    recipe = {"arch": "cnn", "input_shape": [3, 1024, 1024], "num_classes": 10, "class_names": list("abcdefghij"),
              "model": {**model_defaults("cnn"), **model}}
    (tmp_path / RECIPE_FILE).write_text(json.dumps(recipe))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"")
    with pytest.raises(UserError, match=re.escape(phrase)):
        load_model(tmp_path)


@pytest.mark.parametrize("shape, classes", [([1, -8, 8], 10), ([1, 8, 8], 0), ([1, 8], 10), ([9, 8, 8], 10)])
def test_a_recipe_with_an_impossible_input_or_class_count_is_refused(shape, classes):
    from app.models import build
    from app.recipe.config import model_defaults

    with pytest.raises(UserError, match="out of range"):
        build("mlp", shape, classes, model_defaults("mlp"))


def test_train_refuses_an_absurd_flag_before_its_run(trained_copy):
    before = trained_copy.store_snapshot()
    proc = trained_copy.run("train", "--dataset", "digits", "--epochs", "1", "--arch", "cnn", "--dense", "1000000000", check=False)
    assert_clean_refusal(proc, "dense=1000000000 is out of range", "Given as a flag: change it")
    assert trained_copy.store_snapshot() == before and trained_copy.run_dirs() == []


# 5. a class folder whose name is not UTF-8 --------------------------------------------------

@pytest.mark.skipif(sys.getfilesystemencoding() != "utf-8", reason="names are bytes on a UTF-8 file system")
def test_a_class_folder_named_in_bytes_that_are_not_utf8_gets_through_data_prep(workspace, tmp_path):
    root = tmp_path / "cafe"
    small_folder(root, classes=(b"caf\xe9", "plain"))
    workspace.run("data_prep", "--dataset", "imagefolder", "--data-dir", str(root))
    [split] = workspace.versions("cafe-split")
    assert split["metadata"]["class_names"] == ["caf\\xe9", "plain"]  # shown as an escape, distinct


# 6. app/.env that is not a UTF-8 text file --------------------------------------------------

@pytest.mark.parametrize("kind", ["latin-1", "folder"])
def test_an_env_file_that_cannot_be_read_is_a_user_error(tmp_path, kind):
    from app.tracking.settings import load_env_file

    path = tmp_path / ".env"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"WANDB_PROJECT=caf\xe9\n")
    with pytest.raises(UserError, match=r"\.env cannot be read as a settings file .* UTF-8 text file"):
        load_env_file(path)


# 7. aliases no ref can address --------------------------------------------------------------

def test_aliases_no_ref_can_name_are_refused_and_nothing_moves(trained_copy):
    ws = trained_copy
    before = ws.store_snapshot()
    for alias in ("", "../../x", "a\nb", "a:b"):
        moved = ws.run("registry", "alias", "digits-convnet:v0", alias, check=False)
        assert_clean_refusal(moved, "cannot be an alias")
    linked = ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias=../../x", check=False)
    assert_clean_refusal(linked, "cannot be an alias")
    assert ws.store_snapshot() == before


def test_an_alias_refs_can_name_is_accepted():
    from app.tracking.refs import parse_ref
    from app.tracking.store import check_alias

    for alias in ("production", "best.v2", "to_evaluate", "2026-12-04"):
        check_alias(alias)
        assert parse_ref(f"digits-convnet:{alias}").alias == alias
    for alias in ("with space", "_lead", "a/b", "prod\n"):
        with pytest.raises(UserError, match="cannot be an alias"):
            check_alias(alias)
    with pytest.raises(UserError):
        parse_ref("digits-convnet:v1\nx")


# 8. 16-bit greyscale ------------------------------------------------------------------------

def test_16_bit_greyscale_pngs_are_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]] * 4, dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits
    path = tmp_path / "scan16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # what Pillow hands over for a 16-bit PNG
    assert image_files.read_image(path, 1, None)[0].tolist() == [0, 1, 128, 255]
    assert image_files.read_image(path, 3, None)[0, :, 0].tolist() == [0, 1, 128, 255]
    # Pillow's own conversion, which this replaces, saturates every value above 255
    assert np.asarray(Image.open(path).convert("L"))[0].tolist() == [0, 255, 255, 255]
    # an 8-bit image in Pillow's 32-bit "I" mode keeps its values
    assert image_files.to_8_bits(np.array([[0, 12, 255]], np.int32)).tolist() == [[0, 12, 255]]


# 9. EXIF orientation ------------------------------------------------------------------------

def phone_photo(path: Path, orientation: int) -> None:
    """A 40 wide x 20 high JPEG, white in its stored top-left corner, with an EXIF orientation
    as phones write it (6: shown turned 90 degrees clockwise)."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:8, :8] = 255
    exif = Image.Exif()
    exif[image_files.ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_in_data_prep_and_predict(tmp_path):
    from app.evaluation.images import read_inputs

    path = tmp_path / "phone.jpg"
    phone_photo(path, 6)
    assert image_files.read_header(path) == ((40, 20), "RGB")  # shown 20 wide x 40 high
    upright = image_files.read_image(path, 1, None)
    assert upright.shape == (40, 20)
    assert upright[:8, -8:].mean() > 200 and upright[:8, :8].mean() < 50  # turned clockwise: top-left -> top-right
    [(name, image)] = read_inputs([str(path)])
    assert name == str(path) and image.shape == (40, 20, 3) and image[:8, -8:].mean() > 200

    phone_photo(tmp_path / "plain.jpg", 1)
    assert image_files.read_header(tmp_path / "plain.jpg") == ((20, 40), "RGB")


# 10. predict on a folder --------------------------------------------------------------------

def test_predict_classifies_every_image_in_a_folder_and_names_an_empty_one(production, tmp_path):
    folder = tmp_path / "incoming"
    (folder / "more").mkdir(parents=True)
    digit_png(folder / "one.png")
    digit_png(folder / "more" / "two.png")
    (folder / "notes.txt").write_text("not an image: passed over in a folder")
    result = json.loads(production.run("predict", "--json", str(folder)).stdout)
    assert [p["input"] for p in result["predictions"]] == [str(folder / "more" / "two.png"), str(folder / "one.png")]

    (tmp_path / "empty").mkdir()
    before = production.store_snapshot()
    proc = production.run("predict", str(tmp_path / "empty"), check=False)
    assert_clean_refusal(proc, "holds no image files")
    assert production.store_snapshot() == before


def test_predict_with_a_missing_file_refuses_before_any_run_or_lineage_record(production, tmp_path):
    ws = production
    before, runs = ws.store_snapshot(), len(ws.run_dirs())
    proc = ws.run("predict", str(digit_png(tmp_path / "ok.png")), str(tmp_path / "missing.png"), check=False)
    assert_clean_refusal(proc, "missing.png does not exist")
    assert ws.store_snapshot() == before and len(ws.run_dirs()) == runs
