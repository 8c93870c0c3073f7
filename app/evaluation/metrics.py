"""Classification metrics from class probabilities, computed once from arrays.

scikit-learn's metrics, not torchmetrics': importing any part of torchmetrics imports all of
it, torchvision's models and torch's compiler stack with it (3.5-3.9 s of every evaluate.py
start, measured here); sklearn.metrics takes 1.3 s and the numbers are the same (tested
against torchmetrics in tests/test_evaluate.py).
"""
from __future__ import annotations

import numpy as np


def classification_report(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Loss, accuracy, per-class precision/recall/F1, macro F1 and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = np.asarray(labels, dtype=np.int64)
    preds = probs.argmax(1)
    classes = list(range(num_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(labels, preds, labels=classes, average=None,
                                                               zero_division=0)
    picked = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), 1e-12, None)
    return {
        "loss": float(-np.log(picked).mean()),
        "accuracy": float((preds == labels).mean()),
        "macro_f1": float(np.mean(f1)),
        "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()},
        "confusion_matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
    }
