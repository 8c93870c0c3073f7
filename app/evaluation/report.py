"""What evaluate.py shows a person: confusion-matrix figures, error-analysis tables, prediction files."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_figure(matrix: list[list[int]], class_names: list[str], title: str):
    """Counts and row-normalised (recall per true class), side by side."""
    counts = np.asarray(matrix)
    normalised = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, values, label, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normalised, "row-normalised", ".2f")):
        ax.imshow(values, cmap="Blues")
        ax.set_title(f"{title}: {label}")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90)
        ax.set_yticks(ticks, class_names)
        threshold = values.max() / 2
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                    color="white" if v > threshold else "black")
    fig.tight_layout()
    return fig


def error_columns(class_names: list[str], with_images: bool) -> list[str]:
    return ["id", *(["image"] if with_images else []), "label", "prediction", "confidence", "correct",
            *(f"p_{name}" for name in class_names)]


def error_rows(probs: np.ndarray, labels: np.ndarray, class_names: list[str], images=None, make_image=None) -> list[list]:
    """One row per example, built from whole arrays (no per-example figure)."""
    preds = probs.argmax(1)
    confidence = probs.max(1)
    correct = preds == labels
    names = np.asarray(class_names, dtype=object)
    prob_lists = np.round(probs, 5).tolist()
    rows = []
    for i in range(len(labels)):
        image = [make_image(images[i])] if make_image is not None else []
        rows.append([i, *image, names[labels[i]], names[preds[i]], float(confidence[i]), bool(correct[i]),
                     *prob_lists[i]])
    return rows


def write_predictions(path: Path, probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Path:
    """The error-analysis table without images (ids index the dataset artifact's split)."""
    columns = error_columns(class_names, with_images=False)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(error_rows(probs, labels, class_names))
    return path


def log_split(run, name: str, results: dict, probs: np.ndarray, labels: np.ndarray, images: np.ndarray,
              class_names: list[str], with_images: bool) -> dict:
    """Log one split's metrics, per-class table, confusion matrices and its two tables:
    `<split>/predictions` (every example) and `<split>/errors` (the misclassified ones, the most
    confident first). Returns what the HTML report shows of the split (html_report.render)."""
    from app.evaluation import html_report

    figure = confusion_figure(results["confusion_matrix"], class_names, name)
    confusion_png = html_report.figure_png(figure)
    rows = error_rows(probs, labels, class_names, images, run.image if with_images else None)
    errors = html_report.most_confident_errors(probs, labels)
    columns = error_columns(class_names, with_images)
    run.log({
        f"{name}/accuracy": results["accuracy"],
        f"{name}/loss": results["loss"],
        f"{name}/macro_f1": results["macro_f1"],
        f"{name}/per_class": run.table(
            ["class", "precision", "recall", "f1"],
            [[c, *(results["per_class"][k][i] for k in ("precision", "recall", "f1"))] for i, c in enumerate(class_names)]),
        f"{name}/confusion_matrix": run.confusion_matrix(labels, probs.argmax(1), class_names, f"{name} confusion matrix"),
        f"{name}/confusion_matrix_image": run.image(figure),
        f"{name}/predictions": run.table(columns, rows),
        f"{name}/errors": run.table(columns, [rows[i] for i in errors]),
    })
    preds = probs.argmax(1)
    return {"report": results, "confusion_png": confusion_png,
            "errors": [(html_report.image_png(images[i]), class_names[labels[i]], class_names[preds[i]],
                        float(probs[i].max())) for i in errors[:html_report.WORST_ERRORS]]}
