"""evaluate.py and predict.py end to end, plus the metrics and the gate as units."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.evaluation.gate import decide
from app.evaluation.metrics import classification_report
from app.evaluation.report import error_columns, error_rows
from conftest import leet_records, runs_of


@pytest.mark.parametrize("classes, never_predicted", [(4, False), (5, True)])
def test_metrics_agree_with_scikit_learn_and_the_calibration_error_with_its_bins(classes, never_predicted):
    """torchmetrics computes them batch by batch (app/evaluation/metrics.py); scikit-learn on the
    whole arrays is the independent reference. A class no example is predicted as (precision 0/0)
    counts as 0 in both. The ECE equals the one its reliability bins give."""
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    from app.evaluation import metrics

    rng = np.random.default_rng(classes)
    probs = rng.dirichlet(np.ones(classes), size=9000).astype(np.float32)  # three updates of BATCH
    if never_predicted:
        probs[:, -1] = 0.0  # the last class is never the argmax
    labels = rng.integers(0, classes, 9000)
    report = classification_report(probs, labels, classes)
    preds = probs.argmax(1)
    expected = precision_recall_fscore_support(labels, preds, labels=list(range(classes)), zero_division=0)
    for k, name in enumerate(("precision", "recall", "f1")):
        assert report["per_class"][name] == pytest.approx(expected[k].tolist(), abs=1e-6)
    if never_predicted:  # 0/0 counts as 0, and the class is still in the report
        assert len(report["per_class"]["precision"]) == classes and report["per_class"]["precision"][-1] == 0.0
    else:
        assert (preds == classes - 1).any()
    assert report["accuracy"] == pytest.approx(float((preds == labels).mean()))
    assert report["macro_f1"] == pytest.approx(float(np.mean(expected[2])))
    assert report["confusion_matrix"] == confusion_matrix(labels, preds, labels=list(range(classes))).tolist()
    picked = np.clip(probs[np.arange(9000), labels].astype(np.float64), 1e-12, None)
    assert report["loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-6)  # the mean negative log-likelihood
    if not never_predicted:  # rows summing to 1: scikit-learn's log loss is the same number
        rows = probs.astype(np.float64) / probs.astype(np.float64).sum(1, keepdims=True)
        assert report["loss"] == pytest.approx(log_loss(labels, rows, labels=list(range(classes))), rel=1e-4)
    bins = report["reliability"]
    assert sum(bins["count"]) == 9000 and bins["bins"] == metrics.CALIBRATION_BINS
    from_bins = sum(n * abs(a - c) for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"])) / 9000
    assert report["ece"] == pytest.approx(from_bins, abs=1e-5) and report["ece"] > 0.05  # random: uncalibrated


def test_digits_figures_through_torchmetrics_are_scikit_learns(digits_model):
    """The same figures as before the move to torchmetrics, on a real model's digits predictions."""
    import torch
    from sklearn.metrics import confusion_matrix, f1_score

    from app.inference import probabilities

    model, recipe, split = digits_model
    for name in ("val", "test"):
        probs = probabilities(model, split.images[name], torch.device("cpu"), recipe)
        labels, preds = split.labels[name], probs.argmax(1)
        report = classification_report(probs, labels, 10)
        assert report["accuracy"] == pytest.approx(float((preds == labels).mean()), abs=1e-6)  # float32
        assert report["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0), abs=1e-6)
        assert report["confusion_matrix"] == confusion_matrix(labels, preds, labels=list(range(10))).tolist()
        assert report["accuracy"] > 0.9 and 0 <= report["ece"] < 0.1


def test_a_calibrated_model_has_a_small_calibration_error():
    """Labels drawn from the probabilities themselves: confidence matches accuracy, ECE near 0."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.3, size=20000).astype(np.float32)
    labels = np.array([rng.choice(4, p=p / p.sum()) for p in probs])
    assert classification_report(probs, labels, 4)["ece"] < 0.02


def test_error_rows_have_one_row_per_example_and_every_column():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], np.float32)
    rows = error_rows(probs, np.array([0, 0, 1]), ["a", "b"])
    assert error_columns(["a", "b"], with_images=False) == ["id", "label", "prediction", "confidence", "correct", "p_a", "p_b"]
    assert [r[0] for r in rows] == [0, 1, 2]
    assert [r[4] for r in rows] == [True, False, False]
    assert rows[1][1:4] == ["a", "b", pytest.approx(0.7)]
    picked = error_rows(probs, np.array([0, 0, 1]), ["a", "b"], indices=np.array([2, 0]))
    assert picked == [rows[2], rows[0]] and type(picked[0][0]) is int


@pytest.mark.parametrize("classes", [10, 100])
def test_confusion_figures_number_the_cells_only_where_the_numbers_fit(classes):
    """Up to ANNOTATED_CLASSES classes every cell shows its count; beyond, colour and a colour bar
    (100 classes numbered cell by cell took 38 s to draw, unreadable), and at most
    LABELLED_CLASSES tick labels; the label-distribution plot stays within its width."""
    import matplotlib.pyplot as plt

    from app.data.plots import MAX_WIDTH, label_distribution
    from app.evaluation.report import ANNOTATED_CLASSES, LABELLED_CLASSES, confusion_figure

    names = [f"class_{i}" for i in range(classes)]
    matrix = (np.eye(classes, dtype=int) * 9 + 1).tolist()
    figure = confusion_figure(matrix, names, "val")
    counts, normalised = figure.axes[:2]
    numbered = classes <= ANNOTATED_CLASSES
    assert len(counts.texts) == len(normalised.texts) == (classes ** 2 if numbered else 0)
    assert len(figure.axes) == (2 if numbered else 4)  # the two matrices, and a colour bar each beyond
    if numbered:
        assert counts.texts[0].get_text() == "10" and normalised.texts[1].get_text() == f"{1 / (classes + 9):.2f}"
    assert 0 < len(counts.get_xticklabels()) <= LABELLED_CLASSES and counts.get_xticklabels()[0].get_text() == "class_0"
    bars = label_distribution({"train": [3] * classes, "val": [1] * classes}, names)
    assert bars.get_size_inches()[0] <= MAX_WIDTH
    plt.close("all")


def test_the_run_tables_keep_within_wandbs_row_limit_and_keep_the_most_confident_errors():
    """W&B keeps 10,000 rows of a table logged to a run and drops the rest with only a log line:
    the tables show the first 10,000 examples and the 10,000 most confident errors."""
    import wandb

    from app.evaluation.html_report import most_confident_errors
    from app.evaluation.report import TABLE_ROWS, table_indices

    assert TABLE_ROWS == wandb.Table.MAX_ROWS  # fails when W&B changes its limit
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), 25).astype(np.float32)
    labels = rng.integers(0, 3, 25)
    errors = most_confident_errors(probs, labels)
    shown, shown_errors = table_indices(25, errors, limit=4)
    assert shown.tolist() == [0, 1, 2, 3] and shown_errors.tolist() == errors[:4].tolist()
    assert probs.max(1)[shown_errors].min() >= probs.max(1)[np.setdiff1d(errors, shown_errors)].max()
    shown, shown_errors = table_indices(25, errors)
    assert len(shown) == 25 and shown_errors.tolist() == errors.tolist()


def test_gate_promotes_better_or_first_and_refuses_worse_ties_leakage_or_incomparable():
    assert decide(0.5, None).promote
    production = {"ref": "p", "test_accuracy": 0.9, "comparable": True}
    assert decide(0.91, production).promote
    tie = decide(0.9, production)
    assert not tie.promote and "--promote-ties" in tie.reason
    assert decide(0.9, production, ties=True).promote
    leaked = decide(0.99, None, own_data=False)
    assert not leaked.promote and "dataset version other than" in leaked.reason
    worse = decide(0.8, {"ref": "p", "test_accuracy": 0.9, "comparable": True})
    assert not worse.promote and "0.8000 < production's 0.9000" in worse.reason
    assert not decide(0.99, {"ref": "p", "comparable": False}).promote
    assert not decide(0.99, {"ref": "p", "comparable": True, "same_model": True}).promote


def test_evaluate_promote_refuse_and_predict(trained_copy, tmp_path):
    ws = trained_copy
    # an absolute floor refuses even a first model, and says so (a model that has hardly learnt:
    # the default one scores 100% on digits' 180 test images)
    ws.run("train", "--arch", "mlp", "--epochs", "1", "--lr", "0.00001", "--checkpoint-every", "0")
    ws.run("registry", "link", "digits-mlp:v0", "digits-mlp", "--alias", "to_evaluate")
    floor = ws.run("evaluate", "--arch", "mlp", "--promote", "--min-accuracy", "0.99", "--no-generate-images",
                   check=False)
    assert floor.returncode == 3  # a refused promotion: its own documented status, not an error's 2
    assert "refused (test accuracy" in floor.stdout and "below the --min-accuracy floor 0.9900" in floor.stdout
    assert not [v for v in ws.versions("wandb-registry-model/digits-mlp") if "production" in v["aliases"]]
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "to_evaluate")
    out = ws.run("evaluate", "--arch", "convnet", "--promote", "--min-accuracy", "0.5").stdout
    assert "promoted to wandb-registry-model/digits-convnet:v0" in out and "no production model yet" in out
    assert "the --min-accuracy floor 0.5000 is met" in out
    assert "onnx export: digits-convnet-onnx:v0" in out  # the promoted version, servable without this repo
    assert ws.versions("digits-convnet-onnx")[0]["metadata"]["model_digest"] == ws.versions("digits-convnet")[0]["digest"]

    # row counts of both tables equal the split sizes, in the evaluation artifact and the W&B run
    evaluation = ws.versions("digits-convnet-evaluation")[-1]
    sizes = ws.versions("digits-split")[0]["metadata"]["split_sizes"]
    store_dir = ws.store / "objects" / evaluation["digest"]
    for split in ("val", "test"):
        with open(store_dir / f"{split}_predictions.csv") as f:
            rows = list(csv.reader(f))
        assert len(rows) - 1 == sizes[split]
        assert rows[0][:6] == ["id", "label", "prediction", "confidence", "correct", "p_0"]
    eval_dir = runs_of(ws, "evaluate")[-1]
    records = leet_records(eval_dir)
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert 0 < summary["val/accuracy"] <= 1 and 0 < summary["test/accuracy"] <= 1
    assert "val_test_gap" in summary
    tables = {f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]}
    wrong = {}
    for split in ("val", "test"):
        assert any(f"{split}/confusion_matrix_image" in t for t in tables)
        every = json.loads((eval_dir / "files" / next(t for t in tables if f"{split}/predictions" in t
                                                      and t.endswith(".table.json"))).read_text())
        assert len(every["data"]) == sizes[split] and "image" in every["columns"]
        errors = json.loads((eval_dir / "files" / next(t for t in tables if f"{split}/errors" in t
                                                       and t.endswith(".table.json"))).read_text())
        correct, confidence = errors["columns"].index("correct"), errors["columns"].index("confidence")
        wrong[split] = sum(not row[correct] for row in every["data"])
        assert len(errors["data"]) == wrong[split] and not any(row[correct] for row in errors["data"])
        assert [r[confidence] for r in errors["data"]] == sorted((r[confidence] for r in errors["data"]), reverse=True)
        assert any(f"{split}/confusion_matrix" in t and "image" not in t for t in tables)

    # the HTML report: next to the run, printed, logged, in the artifact; errors as inline images
    report = Path(out.split("report: ")[1].splitlines()[0])
    assert report.parent == eval_dir and report.read_text() == (store_dir / "report.html").read_text()
    page = report.read_text()
    # two confusion matrices, two reliability diagrams and the learning curves
    issues = evaluation["metadata"]["label_issues"]  # #39: cleanlab's candidates on val and test
    assert set(issues) == {"val", "test"} and f"label issues: {sum(issues.values())} candidate(s)" in out
    with open(store_dir / "label_issues.csv") as f:
        issue_rows = list(csv.reader(f))
    assert issue_rows[0] == ["split", "index", "label", "suggested", "self_confidence"]
    assert len(issue_rows) - 1 == sum(issues.values()) and "<h2>Label issues</h2>" in page
    assert any("label_issues" in t and t.endswith(".table.json") for t in tables)
    assert page.count("<img") == 5 + min(wrong["val"], 24) + min(wrong["test"], 24) + min(sum(issues.values()), 48)
    assert "no production model" in page and "src=\"http" not in page  # self-contained
    assert any(t.startswith("media/html/report") for t in tables)

    # lineage: the evaluation run used both the model version and the dataset version
    eval_run = evaluation["logged_by"]["id"]
    assert eval_run in [u["id"] for u in ws.versions("digits-convnet")[0]["used_by"]]
    assert eval_run in [u["id"] for u in ws.versions("digits-split")[0]["used_by"]]

    # a deliberately worse model is refused, production stays
    ws.run("train", "--dataset", "digits", "--epochs", "1", "--width", "8", "--lr", "0.00001")
    ws.run("registry", "link", "digits-convnet:v1", "digits-convnet", "--alias", "to_evaluate")
    refused = ws.run("evaluate", "--arch", "convnet", "--promote", "--no-generate-images", check=False)
    out = refused.stdout
    assert refused.returncode == 3 and "promotion: refused" in out and "< production's" in out
    page = Path(out.split("report: ")[1].splitlines()[0]).read_text()
    assert "production (wandb-registry-model/digits-convnet:v0)" in page  # the two models side by side
    production = [v for v in ws.versions("wandb-registry-model/digits-convnet") if "production" in v["aliases"]]
    assert [v["version"] for v in production] == ["v0"]

    # predict on PNG renderings of test digits
    split_dir = ws.store / "objects" / ws.versions("digits-split")[0]["digest"]
    images, labels = np.load(split_dir / "test_images.npy"), np.load(split_dir / "test_labels.npy")
    files = []
    for i in range(60):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(images[i]).resize((56, 56)).save(path)
        files.append(str(path))
    result = json.loads(ws.run("predict", "--dataset", "digits", "--json", *files).stdout)
    predicted = [int(p["class"]) for p in result["predictions"]]
    assert result["model"] == "wandb-registry-model/digits-convnet:v0"
    assert np.mean(np.array(predicted) == labels[:60]) >= 0.9

    not_image = tmp_path / "fake.png"
    not_image.write_text("not an image")
    proc = ws.run("predict", "--dataset", "digits", str(not_image), check=False)
    assert proc.returncode == 2 and "not an image" in proc.stderr


def test_npy_inputs_in_the_unit_range_are_scaled_not_clipped():
    from app.evaluation.images import as_uint8

    assert as_uint8(np.array([[0.0, 0.5, 1.0]], np.float32)).tolist() == [[0, 128, 255]]
    assert as_uint8(np.array([[0, 12, 255]], np.uint8)).tolist() == [[0, 12, 255]]
    assert as_uint8(np.array([[-3.0, 12.4, 300.0]])).tolist() == [[0, 12, 255]]  # 0..255 floats: clipped only
