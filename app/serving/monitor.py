"""What serve.py records of its traffic for its W&B run (job type `serve`): per window of
`--log-every` seconds the request rate, latency percentiles, the predicted-class shares, the
confidences, and drift scores of both against the served model's own validation predictions
(`val_predictions.csv` of its evaluation artifact, written by evaluate.py).

Drift is the population stability index, PSI = sum((p - q) ln(p / q)) over the classes (p the
window's shares, q the validation predictions') and over ten confidence bins, with a chi-square
test of the class counts (scipy) beside it. A window is flagged when either PSI passes
DRIFT_PSI, the usual "significant shift" mark; tests/test_serving_hardened.py measures it: the
validation images served score far below it, one class alone far above it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from app.recipe import Recipe

DRIFT_PSI = 0.25
MIN_REQUESTS = 30  # fewer predictions in a window are too few to judge a distribution: no drift score
CONFIDENCE_BINS = np.array([0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0 + 1e-9])
SMOOTHING = 1e-3  # a share never quite 0, so a class missing on one side counts without an infinity


@dataclass(frozen=True)
class Reference:
    """The served model's validation predictions: class shares and confidence-bin shares."""

    source: str  # the evaluation artifact's ref
    classes: np.ndarray
    confidences: np.ndarray

    @classmethod
    def of_predictions(cls, source: str, class_names: list[str], predicted: list[str], confidence: list[float]):
        index = {name: i for i, name in enumerate(class_names)}
        counts = np.bincount([index[p] for p in predicted if p in index], minlength=len(class_names))
        return cls(source, _shares(counts), _shares(np.histogram(confidence, CONFIDENCE_BINS)[0]))


def psi(observed: np.ndarray, expected: np.ndarray) -> float:
    p, q = _smooth(observed), _smooth(expected)
    return float(np.sum((p - q) * np.log(p / q)))


def _shares(counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / max(counts.sum(), 1.0)


def _smooth(shares: np.ndarray) -> np.ndarray:
    shares = np.asarray(shares, dtype=np.float64) + SMOOTHING
    return shares / shares.sum()


class Monitor:
    """Thread-safe counts of the answers since the last window."""

    def __init__(self, class_names: list[str], reference: Reference | None, model: str = ""):
        self._lock = threading.Lock()
        self.retarget(class_names, reference, model)

    def retarget(self, class_names: list[str], reference: Reference | None, model: str) -> None:
        """Another version is served (a reload): its classes and its own reference from now on."""
        with self._lock:
            self.class_names, self.reference, self.model = list(class_names), reference, model
            self._reset()

    def _reset(self) -> None:
        self._classes = np.zeros(len(self.class_names), dtype=np.int64)
        self._confidences: list[float] = []
        self._latencies: list[float] = []
        self._errors = 0

    def record(self, class_name: str | None, confidence: float | None, seconds: float) -> None:
        """One answer (class_name None: an error)."""
        with self._lock:
            self._latencies.append(seconds)
            if class_name is None:
                self._errors += 1
            elif class_name in self.class_names:
                self._classes[self.class_names.index(class_name)] += 1
                self._confidences.append(float(confidence))

    def window(self, seconds: float) -> tuple[dict, list[float]]:
        """(the window's figures, with its drift scores when it holds enough predictions; its
        confidences); starts a new window."""
        with self._lock:
            classes, confidences, latencies, errors = self._classes, self._confidences, self._latencies, self._errors
            self._reset()
        predicted = int(classes.sum())
        figures = {"serve/requests": len(latencies), "serve/requests_per_s": len(latencies) / max(seconds, 1e-9),
                   "serve/errors": errors}
        if latencies:
            p50, p95, p99 = np.percentile(np.array(latencies) * 1e3, [50, 95, 99])
            figures.update({"serve/latency_p50_ms": p50, "serve/latency_p95_ms": p95, "serve/latency_p99_ms": p99})
        if predicted:
            figures.update({f"serve/share/{name}": float(n) / predicted for name, n in zip(self.class_names, classes)})
            figures["serve/mean_confidence"] = float(np.mean(confidences))
        if predicted >= MIN_REQUESTS and self.reference is not None:
            figures.update(self.drift(classes, np.asarray(confidences)))
        return figures, confidences

    def drift(self, classes: np.ndarray, confidences: np.ndarray) -> dict:
        from scipy.stats import chisquare

        expected = _smooth(self.reference.classes) * classes.sum()
        class_psi = psi(_shares(classes), self.reference.classes)
        confidence_psi = psi(_shares(np.histogram(confidences, CONFIDENCE_BINS)[0]), self.reference.confidences)
        return {"serve/drift_psi_classes": class_psi, "serve/drift_psi_confidence": confidence_psi,
                "serve/drift_chi2_p": float(chisquare(classes, expected).pvalue),
                "serve/drift": bool(class_psi > DRIFT_PSI or confidence_psi > DRIFT_PSI)}


def reference_for(backend, recipe: Recipe, digest: str) -> Reference | None:
    """The validation predictions of the served version's newest evaluation (found by the model's
    digest in its evaluation collection), None when it was never evaluated."""
    import csv

    from app import names
    from app.spreadsheet import read_cell
    from app.tracking.discovery import newest_evaluation

    evaluation = newest_evaluation(backend, names.evaluation_artifact(recipe.dataset.name, recipe.arch), digest)
    if evaluation is None:
        return None
    with open(evaluation.path / "val_predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return Reference.of_predictions(evaluation.ref, list(recipe.class_names),
                                    [read_cell(r["prediction"]) for r in rows], [float(r["confidence"]) for r in rows])


def report(run, live, monitor: Monitor, backend, every: float, stop: threading.Event) -> None:
    """serve.py's reporter thread: every `every` seconds the window's figures into the serve run
    (a confidence histogram beside them) and a line on stderr when the window drifted. Follows
    reloads: a new version is judged against its own validation predictions."""
    import sys

    while not stop.wait(every):
        current = live.current
        if current.ref != monitor.model:
            monitor.retarget(current.predictor.class_names,
                             reference_for(backend, current.predictor.recipe, current.digest), current.ref)
            continue
        figures, confidences = monitor.window(every)
        if not figures["serve/requests"]:
            continue
        run.log({**figures, **({"serve/confidence": run.histogram(confidences)} if confidences else {})})
        if figures.get("serve/drift"):
            print(f"serve: drift in the last {every:g} s: the predicted classes' PSI "
                  f"{figures['serve/drift_psi_classes']:.2f}, the confidences' {figures['serve/drift_psi_confidence']:.2f} "
                  f"(over {DRIFT_PSI} is a shift) against {monitor.reference.source}", file=sys.stderr, flush=True)
