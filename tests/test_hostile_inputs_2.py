"""Hostile inputs, round two (issue #37): CSV injection, class names that look like mathtext,
sources that change while a run reads them, two processes training one run, labels out of
range, and two promotions racing. Each test drives the scripts as a user would."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from app.errors import UserError
from conftest import REPO, SCRIPTS
from test_hostile_inputs import assert_clean_refusal
from test_online_contract import online, standin  # noqa: F401 (fixtures)

# Class folders a spreadsheet would run as formulas, and one matplotlib would parse as mathtext.
FORMULA_CLASSES = ("=cmd|' -C calc'!A0", "@SUM(1+1)", "+HYPERLINK(\"x.invalid\")")
MATHTEXT_CLASS = "a$\\notacommand{$b"


def small_folder(root: Path, classes=("a", "b"), per_class: int = 12) -> Path:
    """8x8 greyscale PNGs, one brightness band per class (any number of classes)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        base = int(200 * c / max(len(classes) - 1, 1))
        for i in range(per_class):
            pixels = (rng.integers(0, 50, (8, 8)) + base).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def csv_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def formula_cells(cells: list[str]) -> list[str]:
    """Cells a spreadsheet would run: they start like a formula and are not plain numbers."""
    def number(cell):
        try:
            float(cell)
            return True
        except ValueError:
            return False
    return [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not number(c)]


# 1. + 5. CSV injection, and class names that are no mathtext ---------------------------------

def test_class_and_file_names_reach_no_csv_as_formulas_and_plots_show_them_as_written(workspace, tmp_path):
    ws = workspace
    folder = small_folder(tmp_path / "pics", classes=(*FORMULA_CLASSES, MATHTEXT_CLASS), per_class=10)
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", str(folder))  # the label plot: mathtext once crashed here
    [split] = ws.versions("pics-split")
    assert split["metadata"]["class_names"] == sorted((*FORMULA_CLASSES, MATHTEXT_CLASS))
    ws.run("train", "--epochs", "1")
    ws.run("evaluate", "--model", "pics-convnet:v0")  # confusion matrices with those names as tick labels
    [evaluation] = ws.versions("pics-convnet-evaluation")
    for split_name in ("val", "test"):
        cells = csv_cells(ws.store / "objects" / evaluation["digest"] / f"{split_name}_predictions.csv")
        assert any(c.startswith("'=cmd|") for c in cells)  # shown as text, not dropped
        assert formula_cells(cells) == []

    # a file named like a formula, passed as a relative path, is the predict CSV's first cell of its row
    image = ws.path / "=cmd|' -C calc'!A0.png"
    image.write_bytes((folder / FORMULA_CLASSES[0] / "0.png").read_bytes())
    ws.run("predict", "--model", "pics-convnet:v0", image.name, "--output", "out.csv")
    cells = csv_cells(ws.path / "out.csv")
    assert cells[4] == "'" + image.name and formula_cells(cells) == []


def test_safe_cell_follows_owasps_rule_and_leaves_numbers_alone():
    from app.spreadsheet import safe_cell

    for text in ("=1+1", "+1", "-x", "@SUM(A1)", "\t=1", "\r=1"):
        assert safe_cell(text) == "'" + text
    for value in ("plain", "a=b", -0.5, 3, True, "", None):
        assert safe_cell(value) == value


def test_plots_draw_class_names_that_look_like_mathtext(tmp_path):
    from app.data.plots import label_distribution
    from app.evaluation.report import confusion_figure

    names = [MATHTEXT_CLASS, "$x^2$", "plain"]
    label_distribution({"train": [3, 4, 5], "val": [1, 1, 1]}, names).savefig(tmp_path / "labels.png")
    figure = confusion_figure([[1, 0, 0], [0, 1, 0], [0, 0, 1]], names, "val")
    figure.savefig(tmp_path / "confusion.png")
    shown = {t.get_text() for ax in figure.axes for t in ax.get_xticklabels()}
    assert MATHTEXT_CLASS in shown and "$x^2$" in shown  # as written, not rendered as math


# 2. a referenced source that changes while a run reads it ------------------------------------

def referenced_split(ws, folder: Path):
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", str(folder), "--reference")
    from app.data.references import read_references

    [version] = ws.versions(f"{folder.name}-split")
    return read_references(ws.store / "objects" / version["digest"])


def overwrite(path: Path, seed: int) -> None:
    """Other pixels in the same file, replaced whole (as an editor saves)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8)).astype(np.uint8)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(pixels).save(tmp)
    os.replace(tmp, path)


def test_an_image_changed_after_the_start_check_is_refused_when_it_is_read(workspace, tmp_path):
    from app.data.references import ReferencedImages

    folder = small_folder(tmp_path / "shots", per_class=10)
    listing = referenced_split(workspace, folder)
    train = ReferencedImages(listing, "train")
    assert train[:].shape[0] == len(train)  # unchanged: read whole
    overwrite(folder / train.names[1], seed=1)
    with pytest.raises(UserError, match=rf"changed while this run read them: .*{train.names[1]}"):
        train[:]
    train[2:3]  # the others still read


def test_train_stream_stops_before_logging_a_model_when_its_images_change_mid_run(workspace, tmp_path):
    ws = workspace
    folder = small_folder(tmp_path / "shots", per_class=12)
    referenced_split(ws, folder)
    train = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "--stream", "1", "--epochs", "40",
                              "--checkpoint-every", "0"],
                             cwd=ws.path, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in train.stderr:
        seen.append(line)
        if line.startswith("epoch 2/40"):
            for path in sorted(folder.rglob("*.png")):
                overwrite(path, seed=7)
            break
    rest = train.communicate(timeout=300)[1]
    stderr = "".join(seen) + rest
    assert train.returncode == 2, stderr
    assert "Traceback" not in stderr and "changed while this run read them" in stderr
    assert "before logging a model" in stderr and ".png" in stderr.split("changed while this run read them")[1]
    assert "epoch 40/40" not in stderr
    assert ws.versions("shots-convnet") == []  # nothing recorded as trained on the split's version


# 3. two processes training one run ----------------------------------------------------------

def test_a_second_resume_of_a_run_being_trained_is_refused_naming_the_first(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")

    def start(*args):
        return subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), *args], cwd=ws.path, env=ws.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(proc, text):
        for line in proc.stderr:
            if text in line:
                return line
        raise AssertionError(f"{text!r} never came: {proc.communicate()}")

    first = start("-v", "--epochs", "40", "--width", "8")  # -v: a line for each checkpoint
    wait_for(first, "(epoch 1")  # its first checkpoint
    run_id = next(c for c in ws.registry() if c["collection"].startswith("checkpoint-"))["collection"].removeprefix(
        "checkpoint-")
    # while the original process trains, a resume of its run is refused already
    refused = ws.run("train", "--resume", run_id, check=False)
    assert_clean_refusal(refused, f"run {run_id} is being trained by process {first.pid}")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)

    resumed = start("--resume", run_id)
    try:
        wait_for(resumed, f"resuming run {run_id}")
        before = ws.store_snapshot()
        runs = len(ws.run_dirs())
        second = ws.run("train", "--resume", run_id, check=False)
        assert_clean_refusal(second, f"run {run_id} is being trained by process {resumed.pid}", f"kill {resumed.pid}")
        assert len(ws.run_dirs()) == runs  # no second run folder with that id
        assert ws.store_snapshot() == before
    finally:
        resumed.send_signal(signal.SIGKILL)
        resumed.wait(timeout=60)
    # the kernel freed the killed holder's lock: the run can be resumed again
    third = start("--resume", run_id)
    try:
        wait_for(third, f"resuming run {run_id}")
    finally:
        third.send_signal(signal.SIGKILL)
        third.wait(timeout=60)


def test_online_a_run_that_w_and_b_says_is_running_is_not_resumed(online, standin):
    standin.add_run("r1", "train")
    assert online.hold_run("r1", resuming=True) is not None  # finished: held, nothing to refuse
    standin.runs["r1"]["state"] = "running"
    with pytest.raises(UserError, match="run me/proj/r1 is running in W&B"):
        online.hold_run("r1", resuming=True)
    assert online.hold_run("no-such-run", resuming=True) is not None  # a run W&B does not know yet
    assert online.hold_run("r1", resuming=False) is not None  # a new run's state is this process's own


# 4. labels outside the class range ----------------------------------------------------------

def log_split_with_labels(ws, source_ref: str, labels: dict[str, list[int]], tmp_path: Path) -> str:
    """A dataset version whose labels another tool wrote: the files of `source_ref` with some
    labels replaced, logged through the embedded store as any version is."""
    from app.tracking.settings import Settings
    from app.tracking.backends import OfflineBackend

    backend = OfflineBackend(Settings(mode="offline", project="wandb-image-pipeline", entity=None, model_retrain=None,
                                      model_eval=None, store_dir=ws.store, base_url="http://unused.invalid"))
    source = backend.fetch(source_ref, "dataset")
    files = {p.name: p for p in source.path.iterdir() if p.is_file()}
    for split, values in labels.items():
        array = np.load(files[f"{split}_labels.npy"])
        array[:len(values)] = values
        np.save(tmp_path / f"{split}_labels.npy", array)
        files[f"{split}_labels.npy"] = tmp_path / f"{split}_labels.npy"
    run = SimpleNamespace(lineage_entry=lambda: {"id": "by-hand", "name": "by-hand", "job_type": "by-hand"},
                          wandb_run=SimpleNamespace(log_artifact=lambda *a, **k: None))
    return backend.log(run, source.name, "dataset", files, source.metadata, []).ref


def test_labels_outside_the_class_range_are_named_with_the_version(trained_copy, tmp_path):
    ws = trained_copy
    ref = log_split_with_labels(ws, "digits-split:v0", {"train": [99, -1], "test": [10]}, tmp_path)
    assert ref == "digits-split:v1"
    models = ws.versions("digits-convnet")
    trained = ws.run("train", "--data", ref, "--epochs", "1", check=False)
    assert_clean_refusal(trained, f"{ref}: the train labels hold -1, 99, outside the 10 classes (0 to 9)")
    assert ws.versions("digits-convnet") == models  # no model
    evaluated = ws.run("evaluate", "--model", "digits-convnet:v0", "--data", ref, check=False)
    assert_clean_refusal(evaluated, f"{ref}: the train labels hold -1, 99")
    assert ws.versions("digits-convnet-evaluation") == []


def test_labels_that_are_not_class_indices_are_refused():
    from app.data.split_files import check_labels

    names = ["a", "b"]
    check_labels({"train": np.array([0, 1, 1])}, names, "x:v0")
    for labels, phrase in (({"val": np.array([0.0, 1.0])}, "not one integer class index"),
                           ({"val": np.array([[0, 1]])}, "not one integer class index"),
                           ({"test": np.array([2])}, "the test labels hold 2, outside the 2 classes")):
        with pytest.raises(UserError, match=phrase):
            check_labels(labels, names, "x:v0")
    with pytest.raises(UserError, match="no class names"):
        check_labels({"train": np.array([0])}, [], "x:v0")


# 6. two promotions racing -------------------------------------------------------------------

RACE = """
import runpy, subprocess, sys
import app.evaluation.promotion as promotion

original, calls = promotion.production_on_split, []


def production_on_split(*args, **kwargs):
    found = original(*args, **kwargs)
    if not calls:  # the other promotion lands between this one's read of production and its write
        subprocess.run([sys.executable, {registry!r}, "link", {worse!r}, "digits-convnet", "--alias", "production"],
                       check=True, capture_output=True)
    calls.append(found)
    return found


promotion.production_on_split = production_on_split
sys.argv = ["evaluate.py", "--model", {better!r}, "--promote"]
runpy.run_path({evaluate!r}, run_name="__main__")
"""


def test_a_promotion_that_loses_the_race_decides_again_against_the_winner(trained_copy, tmp_path):
    ws = trained_copy
    worse = ws.run("train", "--epochs", "1", "--width", "8", "--checkpoint-every", "0").stdout.split("model artifact: ")[1].split()[0]
    better = "digits-convnet:v0"  # every default: 10 epochs
    script = tmp_path / "race.py"
    script.write_text(RACE.format(registry=str(SCRIPTS / "registry.py"), worse=worse, better=better,
                                  evaluate=str(SCRIPTS / "evaluate.py")))
    proc = subprocess.run([sys.executable, str(script)], cwd=ws.path, env={**ws.env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "'production' moved to wandb-registry-model/digits-convnet:v0" in proc.stderr
    assert "decided again against it: test accuracy" in proc.stderr
    assert "promotion: promoted to wandb-registry-model/digits-convnet:v1" in proc.stdout
    registry = {v["ref"]: v for v in ws.versions("wandb-registry-model/digits-convnet")}
    assert registry["wandb-registry-model/digits-convnet:v0"]["source"].endswith(worse)
    assert registry["wandb-registry-model/digits-convnet:v1"]["source"].endswith(better)
    assert "production" in registry["wandb-registry-model/digits-convnet:v1"]["aliases"]
    assert "production" not in registry["wandb-registry-model/digits-convnet:v0"]["aliases"]


def test_a_promotion_gives_up_when_production_keeps_moving(tmp_path):
    from app.errors import AliasMoved
    from app.evaluation import promotion
    from app.evaluation.gate import Decision

    moves = []

    def always_moved(run, model_version, collection, production):
        moves.append(production)
        raise AliasMoved("'production' of x moved to v9 while this step ran")

    def judge():
        return {"ref": f"x:v{len(moves)}", "version": len(moves)}, Decision(True, "better")

    original = promotion.promote
    promotion.promote = always_moved
    try:
        with pytest.raises(UserError, match=f"moved {promotion.DECIDE_AGAIN + 1} times"):
            promotion.promote_if_still_better(None, None, "x", None, Decision(True, "first"), judge)
    finally:
        promotion.promote = original
    assert len(moves) == promotion.DECIDE_AGAIN + 1
    refused = promotion.promote_if_still_better(None, None, "x", None, Decision(False, "worse"), judge)
    assert refused == (None, None, Decision(False, "worse"))


def test_the_store_holds_a_run_for_one_holder_and_lets_go_of_it(tmp_path):
    from app.tracking.store import Store

    store = Store(tmp_path / "store")
    with store.hold_run("r1"):
        with pytest.raises(UserError, match=f"run r1 is being trained by process {os.getpid()} on "):
            with store.hold_run("r1"):
                pass
        with store.hold_run("r2"):  # another run: no conflict
            pass
    assert not (tmp_path / "store" / "runs" / "r1.lock").exists()  # removed by the holder leaving
    (tmp_path / "store" / "runs" / "r1.lock").write_text('{"pid": 1}')  # a killed holder's file: free
    with store.hold_run("r1"):
        pass
