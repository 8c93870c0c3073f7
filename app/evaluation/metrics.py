"""Classification metrics from class probabilities, through torchmetrics, updated batch by batch:
accuracy, per-class precision/recall/F1 (macro F1 their mean), the confusion matrix, the loss,
and the expected calibration error (ECE: how far the confidences are from the accuracy they
promise, which the promotion gate and serve.py's drift check lean on) with the bins of its
reliability diagram.

torchmetrics is imported here only, where evaluate.py computes metrics. Its package imports
torchvision (an image metric does, at import), and torchvision imports torch's compiler stack: on
top of `import torch` alone, 3.2-3.8 s against scikit-learn's metrics' 1.2 s (median of 5 fresh
processes each, docs/performance.md, "Evaluation metrics"). So an evaluate.py start of a model
that does not load torchvision itself (convnet, cnn, mlp) pays about 2 s for it; a torchvision
model (resnet, the pretrained ones) about 0.2 s.
"""
from __future__ import annotations

import numpy as np

BATCH = 4096  # examples per update
CALIBRATION_BINS = 15  # torchmetrics' default, and the reliability diagram's bars


class SplitMetrics:
    """The metrics of one split, fed batch by batch (`update`), read once (`compute`)."""

    def __init__(self, num_classes: int):
        import torch
        from torchmetrics import MetricCollection
        from torchmetrics.classification import (MulticlassAccuracy, MulticlassCalibrationError,
                                                 MulticlassConfusionMatrix, MulticlassF1Score, MulticlassPrecision,
                                                 MulticlassRecall)

        self.torch, self.num_classes = torch, num_classes
        # zero_division=0: a class no example is predicted as has precision 0, not a warning and NaN
        self.by_class = MetricCollection({
            "precision": MulticlassPrecision(num_classes, average=None, zero_division=0),
            "recall": MulticlassRecall(num_classes, average=None, zero_division=0),
            "f1": MulticlassF1Score(num_classes, average=None, zero_division=0),
        })
        self.accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.calibration = MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS, norm="l1")
        self.loss_sum, self.count = 0.0, 0
        self.bins = np.zeros((3, CALIBRATION_BINS))  # per confidence bin: examples, confidence sum, correct

    def update(self, probs: np.ndarray, labels: np.ndarray) -> None:
        torch = self.torch
        p = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        predicted = p.argmax(1)
        self.by_class.update(predicted, y)
        self.accuracy.update(predicted, y)
        self.confusion.update(predicted, y)
        self.calibration.update(p, y)
        picked = p[torch.arange(len(y)), y].double().clamp_min(1e-12)
        self.loss_sum += float(-picked.log().sum())
        self.count += len(y)
        confidence = p.max(1).values.numpy().astype(np.float64)
        # the bins torchmetrics uses: (k/n, (k+1)/n], the first one closed
        where = np.clip(np.ceil(confidence * CALIBRATION_BINS).astype(int) - 1, 0, CALIBRATION_BINS - 1)
        np.add.at(self.bins[0], where, 1)
        np.add.at(self.bins[1], where, confidence)
        np.add.at(self.bins[2], where, (predicted == y).numpy())

    def compute(self) -> dict:
        per_class = {k: v.tolist() for k, v in self.by_class.compute().items()}
        counts, confidence, correct = self.bins
        filled = counts > 0
        return {
            "loss": self.loss_sum / max(self.count, 1),
            "accuracy": float(self.accuracy.compute()),
            "macro_f1": float(np.mean(per_class["f1"])),
            "per_class": per_class,
            "confusion_matrix": self.confusion.compute().tolist(),
            "ece": float(self.calibration.compute()),
            "reliability": {"bins": CALIBRATION_BINS, "count": counts.astype(int).tolist(),
                            "confidence": np.where(filled, confidence / np.maximum(counts, 1), 0).tolist(),
                            "accuracy": np.where(filled, correct / np.maximum(counts, 1), 0).tolist()},
        }


def classification_report(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """SplitMetrics over whole arrays, BATCH examples per update."""
    metrics = SplitMetrics(num_classes)
    for start in range(0, len(labels), BATCH):
        metrics.update(probs[start:start + BATCH], labels[start:start + BATCH])
    return metrics.compute()
