"""What evaluate.py shows a person: confusion-matrix figures, error-analysis tables, prediction files."""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from app import spreadsheet  # noqa: E402

# Rows W&B keeps of a table logged to a run (wandb.Table.MAX_ROWS): it drops the rest with only a
# log line. The run's tables show this many; the evaluation artifact's CSV files hold every row.
TABLE_ROWS = 10_000


# Cells carry their numbers up to this many classes; beyond it colour alone (with a colour bar):
# the numbers no longer fit a cell, and matplotlib lays out each one (a figure of 100 classes, 20,000
# numbers, took 38 s to draw on a 2-core CPU; its cells colour-only take about 1 s).
ANNOTATED_CLASSES = 20
LABELLED_CLASSES = 100  # tick labels for at most this many classes (every n-th beyond it)


def confusion_figure(matrix: list[list[int]], class_names: list[str], title: str):
    """Counts and row-normalised (recall per true class), side by side; the figure grows with the
    number of classes (up to 16 inches a side), numbers in the cells only where they fit."""
    counts = np.asarray(matrix)
    normalised = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    classes = len(class_names)
    annotated = classes <= ANNOTATED_CLASSES
    side = 5.5 if annotated else min(16.0, 4.0 + 0.12 * classes)
    fig, axes = plt.subplots(1, 2, figsize=(2.2 * side, side))
    step = -(-classes // LABELLED_CLASSES)  # 1 up to LABELLED_CLASSES
    font = 10 if classes <= 30 else 6
    for ax, values, label, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f")):
        shown = ax.imshow(values, cmap="Blues")
        ax.set_title(f"{title}: {label}")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = range(0, classes, step)
        # class names shown as written: a `$` in a folder name is no mathtext (parse_math=False)
        ax.set_xticks(ticks, class_names[::step], rotation=90, parse_math=False, fontsize=font)
        ax.set_yticks(ticks, class_names[::step], parse_math=False, fontsize=font)
        if not annotated:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            continue
        threshold = values.max() / 2
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                    color="white" if v > threshold else "black")
    fig.tight_layout()
    return fig


def reliability_figure(reliability: dict, ece: float, title: str):
    """Accuracy against confidence per bin (a calibrated model's bars meet the diagonal), with
    how many examples each bin holds: the picture behind the expected calibration error."""
    bins = reliability["bins"]
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centres, reliability["accuracy"], width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: reliability (ECE {ece:.4f})")
    ax.legend(loc="upper left")
    counts.bar(centres, reliability["count"], width=1 / bins, color="grey")
    counts.set_yscale("symlog")
    counts.set_xlabel("confidence")
    counts.set_ylabel("examples")
    fig.tight_layout()
    return fig


def learning_curves_figure(history: dict):
    """Loss and accuracy per epoch, training and validation, from a model artifact's "history"
    (names.LEARNING_CURVES); the epoch whose weights the model holds (best validation) marked."""
    epochs = history["epoch"]
    best = int(epochs[int(np.argmax(history["val/accuracy"]))])  # the first best, as engine.best_epoch
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "--"), ("val", "-")):
            ax.plot(epochs, history[f"{split}/{metric}"], style, marker="o", markersize=3, label=split)
        ax.axvline(best, color="grey", linewidth=0.8, linestyle=":", label=f"kept: epoch {best}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def error_columns(class_names: list[str], with_images: bool) -> list[str]:
    return ["id", *(["image"] if with_images else []), "label", "prediction", "confidence", "correct",
            *(f"p_{name}" for name in class_names)]


def error_rows(probs: np.ndarray, labels: np.ndarray, class_names: list[str], images=None, make_image=None,
               indices=None) -> list[list]:
    """One row per example (of `indices`, default all), built from whole arrays (no per-example figure)."""
    preds = probs.argmax(1)
    confidence = probs.max(1)
    correct = preds == labels
    names = np.asarray(class_names, dtype=object)
    prob_lists = np.round(probs, 5).tolist()
    rows = []
    for i in (range(len(labels)) if indices is None else [int(i) for i in indices]):
        image = [make_image(images[i])] if make_image is not None else []
        rows.append([i, *image, names[labels[i]], names[preds[i]], float(confidence[i]), bool(correct[i]),
                     *prob_lists[i]])
    return rows


def write_predictions(path: Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Path:
    """The error-analysis table without images (ids index the dataset artifact's split)."""
    columns = error_columns(class_names, with_images=False)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)  # class names are the user's folder names: no formula runs
        writer.writerow(columns)
        writer.writerows(error_rows(probs, labels, class_names))
    return path


def log_split(run, name: str, results: dict, probs: np.ndarray, labels: np.ndarray, images: np.ndarray,
              class_names: list[str], with_images: bool) -> dict:
    """Log one split's metrics, per-class table, confusion matrices and its two tables:
    `<split>/predictions` (every example) and `<split>/errors` (the misclassified ones, the most
    confident first). Returns what the HTML report shows of the split (html_report.render)."""
    from app.evaluation import html_report

    confusion_png = html_report.figure_png(confusion_figure(results["confusion_matrix"], class_names, name))
    reliability_png = html_report.figure_png(reliability_figure(results["reliability"], results["ece"], name))
    errors = html_report.most_confident_errors(probs, labels)
    shown, shown_errors = table_indices(len(labels), errors)
    needed = np.union1d(shown, shown_errors)  # each example's row (and W&B image) made once
    row_of = dict(zip(needed.tolist(), error_rows(probs, labels, class_names, images,
                                                  run.image if with_images else None, indices=needed)))
    rows, error_table = [row_of[i] for i in shown.tolist()], [row_of[i] for i in shown_errors.tolist()]
    if len(shown) < len(labels) or len(shown_errors) < len(errors):
        print(f"note: {name}'s tables in the run show {len(shown):,} of {len(labels):,} examples and {len(shown_errors):,} "
              f"of {len(errors):,} errors (the most confident), W&B's row limit; {name}_predictions.csv in the "
              "evaluation artifact holds every example.", file=sys.stderr)
    columns = error_columns(class_names, with_images)
    run.log({
        f"{name}/accuracy": results["accuracy"],
        f"{name}/loss": results["loss"],
        f"{name}/macro_f1": results["macro_f1"],
        f"{name}/ece": results["ece"],
        f"{name}/reliability": run.image(reliability_png),
        f"{name}/per_class": run.table(
            ["class", "precision", "recall", "f1"],
            [[c, *(results["per_class"][k][i] for k in ("precision", "recall", "f1"))] for i, c in enumerate(class_names)]),
        f"{name}/confusion_matrix": run.confusion_matrix(labels, probs.argmax(1), class_names, f"{name} confusion matrix"),
        f"{name}/confusion_matrix_image": run.image(confusion_png),
        f"{name}/predictions": run.table(columns, rows),
        f"{name}/errors": run.table(columns, error_table),
    })
    preds = probs.argmax(1)
    return {"report": results, "confusion_png": confusion_png, "reliability_png": reliability_png,
            "errors": [(html_report.image_png(images[i]), class_names[labels[i]], class_names[preds[i]],
                        float(probs[i].max())) for i in errors[:html_report.WORST_ERRORS]]}


def table_indices(examples: int, errors: np.ndarray, limit: int = TABLE_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(the examples the predictions table shows: the first `limit`; the errors the errors table
    shows: the `limit` most confident)."""
    return np.arange(min(examples, limit)), np.asarray(errors)[:limit]


LABEL_ISSUE_COLUMNS = ["split", "index", "label", "suggested", "self_confidence"]


def log_label_issues(run, rows: list[dict], images: dict, class_names: list[str], with_images: bool) -> list:
    """The `label_issues` table (the first label_issues.TABLE_ROWS candidates, least self-confident
    first); returns what the HTML report shows of them: (png, split, index, label, suggested, confidence)."""
    from app.evaluation import html_report
    from app.evaluation.label_issues import TABLE_ROWS

    shown = rows[:TABLE_ROWS]
    table = [[*([run.image(images[r["split"]][r["index"]])] if with_images else []), r["split"], r["index"],
              class_names[r["label"]], class_names[r["suggested"]], r["self_confidence"]] for r in shown]
    run.log({"label_issues": run.table([*(["image"] if with_images else []), *LABEL_ISSUE_COLUMNS], table)})
    return [(html_report.image_png(np.asarray(images[r["split"]][r["index"]])), r["split"], r["index"],
             class_names[r["label"]], class_names[r["suggested"]], r["self_confidence"])
            for r in shown[:html_report.LABEL_ISSUES_SHOWN]]


def write_label_issues(path: Path, rows: list[dict], class_names: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = spreadsheet.writer(f)
        writer.writerow(LABEL_ISSUE_COLUMNS)
        writer.writerows([[r["split"], r["index"], class_names[r["label"]], class_names[r["suggested"]],
                           r["self_confidence"]] for r in rows])
    return path
