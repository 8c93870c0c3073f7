"""The promotion gate: does the evaluated model replace `production`?"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Decision:
    promote: bool
    reason: str


def decide(test_accuracy: float, production: dict | None) -> Decision:
    """`production` is None (no production model yet) or {"ref", "test_accuracy", "comparable", "same_model"}.

    Promote when there is none, or when the model is at least as accurate on the same test
    split. A production model trained on another dataset version cannot be compared on this
    split (its training data may hold these test images), so the gate refuses rather than guess.
    """
    if production is None:
        return Decision(True, "no production model yet")
    if production.get("same_model"):
        return Decision(False, f"this model already is production ({production['ref']})")
    if not production["comparable"]:
        return Decision(False, f"production ({production['ref']}) was trained on another dataset version, so the "
                               "test accuracies are not comparable; promote by hand with registry.py alias if intended")
    theirs = production["test_accuracy"]
    if test_accuracy >= theirs:
        return Decision(True, f"test accuracy {test_accuracy:.4f} >= production's {theirs:.4f}")
    return Decision(False, f"test accuracy {test_accuracy:.4f} < production's {theirs:.4f} ({production['ref']})")
