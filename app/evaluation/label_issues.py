"""Label-issue candidates: images whose given label the model doubts, by confident learning
(cleanlab's find_label_issues) on out-of-sample probabilities.

Only probabilities of images the model never trained on mean anything here: the validation and
test splits (evaluate.py's own predictions), or the training split's out-of-fold predictions
(app/training/out_of_fold.py, `evaluate.py --label-issues train`). Confident learning estimates,
per class, how sure the model is on images it agrees with (the class's threshold) and, from the
images above another class's threshold, how many of each class are likely mislabelled as each
other class; it then lists that many, the least likely under their given label first. A
candidate is for a person to look at, not a verdict: the table shows the image, the given label,
the suggested one and the self-confidence (the probability of the given label).
"""
from __future__ import annotations

import numpy as np

TABLE_ROWS = 500  # candidates shown in the run's table and the report (the CSV has every one)


def candidates(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> list[dict]:
    """The label-issue candidates of the splits given (judged together: more images per class make
    the per-class thresholds steadier), least self-confident first. Each: split, index (within the
    split), label, suggested (the model's class), self_confidence."""
    from cleanlab.filter import find_label_issues

    names = [s for s in probs if len(labels[s])]
    if not names:
        return []
    joined_probs = np.concatenate([probs[s] for s in names]).astype(np.float64)
    joined_labels = np.concatenate([labels[s] for s in names]).astype(np.int64)
    classes = joined_probs.shape[1]
    present = np.bincount(joined_labels, minlength=classes) > 0
    if present.sum() < 2:
        return []
    # cleanlab wants every class among the labels: columns of classes no image is labelled with
    # are folded away (their probability is nobody's given label), then mapped back.
    kept = np.flatnonzero(present)
    folded = joined_probs[:, kept]
    folded /= np.maximum(folded.sum(1, keepdims=True), 1e-12)
    relabel = np.full(classes, -1)
    relabel[kept] = np.arange(len(kept))
    # n_jobs=1: cleanlab's default forks a multiprocessing.Pool, and a pool forked from this
    # process (wandb's and torch's threads running) hung in 2 of about 20 evaluate runs of the test
    # suite, every worker waiting on a lock copied while held; its results do not depend on it.
    found = find_label_issues(relabel[joined_labels], folded, return_indices_ranked_by="self_confidence", n_jobs=1)
    starts = np.cumsum([0] + [len(labels[s]) for s in names])
    rows = []
    for position in found.tolist():
        k = int(np.searchsorted(starts, position, side="right") - 1)
        given = int(joined_labels[position])
        rows.append({"split": names[k], "index": int(position - starts[k]), "label": given,
                     "suggested": int(joined_probs[position].argmax()),
                     "self_confidence": round(float(joined_probs[position, given]), 5)})
    return rows


def counts(rows: list[dict], splits) -> dict[str, int]:
    return {s: sum(1 for r in rows if r["split"] == s) for s in splits}
