"""The promotion gate: does the evaluated model replace `production`?"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Decision:
    promote: bool
    reason: str
    already: bool = False  # the evaluated model already is production: nothing to do, no refusal


def decide(test_accuracy: float, production: dict | None, *, own_data: bool = True, ties: bool = False,
           min_accuracy: float | None = None) -> Decision:
    """`production` is None (no production model yet) or {"ref", "test_accuracy", "comparable", "same_model"}.

    Promote only on the model's own dataset version (`own_data`: another version's test
    images may be in its training set, so the score could be leakage), when there is no
    production model yet, or when the model is strictly more accurate on the same test split
    (a tie promotes only with `ties`: swapping equals would move production for nothing).
    A production model trained on another dataset version cannot be compared on this split
    either (its training data may hold these test images), so the gate refuses rather than guess.
    `min_accuracy` (--min-accuracy) is an absolute floor: below it nothing is promoted, not
    even the first model of a collection.
    """
    decision = _decide(test_accuracy, production, own_data, ties, min_accuracy)
    if min_accuracy is not None and decision.promote:
        decision.reason += f"; the --min-accuracy floor {min_accuracy:.4f} is met"
    return decision


def _decide(test_accuracy, production, own_data, ties, min_accuracy) -> Decision:
    if not own_data:
        return Decision(False, "evaluated on a dataset version other than the one the model was trained on, "
                               "whose test images may be in its training data; promote only on the model's own "
                               "dataset version (drop --data)")
    if min_accuracy is not None and test_accuracy < min_accuracy:
        return Decision(False, f"test accuracy {test_accuracy:.4f} is below the --min-accuracy floor "
                               f"{min_accuracy:.4f}; train longer or tune, then evaluate again")
    if production is None:
        return Decision(True, "no production model yet")
    if production.get("same_model"):
        return Decision(False, f"this model already is production ({production['ref']})", already=True)
    if not production["comparable"]:
        return Decision(False, f"production ({production['ref']}) was trained on another dataset version, so the "
                               "test accuracies are not comparable; promote by hand with registry.py alias if intended")
    theirs = production["test_accuracy"]
    if test_accuracy > theirs:
        return Decision(True, f"test accuracy {test_accuracy:.4f} > production's {theirs:.4f}")
    if test_accuracy == theirs and ties:
        return Decision(True, f"test accuracy {test_accuracy:.4f} ties production's (--promote-ties)")
    if test_accuracy == theirs:
        return Decision(False, f"test accuracy {test_accuracy:.4f} only ties production's ({production['ref']}); "
                               "pass --promote-ties to promote on a tie")
    return Decision(False, f"test accuracy {test_accuracy:.4f} < production's {theirs:.4f} ({production['ref']})")
