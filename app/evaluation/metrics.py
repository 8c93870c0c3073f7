"""Classification metrics from class probabilities, computed once from arrays."""
from __future__ import annotations

import numpy as np
import torch


def classification_report(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Loss, accuracy, per-class precision/recall/F1, macro F1 and the confusion matrix."""
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    p = torch.from_numpy(probs)
    y = torch.from_numpy(labels.astype(np.int64))
    preds = p.argmax(1)
    per_class = {
        name: fn(preds, y, num_classes=num_classes, average=None, zero_division=0).tolist()
        for name, fn in (("precision", multiclass_precision), ("recall", multiclass_recall), ("f1", multiclass_f1_score))
    }
    picked = p[torch.arange(len(y)), y].clamp_min(1e-12)
    return {
        "loss": float(-picked.log().mean()),
        "accuracy": float((preds == y).float().mean()),
        "macro_f1": float(np.mean(per_class["f1"])),
        "per_class": per_class,
        "confusion_matrix": multiclass_confusion_matrix(preds, y, num_classes=num_classes).tolist(),
    }
