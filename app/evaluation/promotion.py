"""The promotion gate's inputs and its one action, on either backend.

production_on_split: the production model's test accuracy on the evaluated split, when a
fair comparison (same dataset version); promote: move `production` to the evaluated model.
`run` is an app.tracking.Run (its backend does the registry work); nothing here imports wandb.
"""
from __future__ import annotations

import sys

from app import names
from app.errors import AliasMoved, UserError
from app.inference import probabilities
from app.models.files import load_model


def production_on_split(run, collection, model_version, dataset, split, device, workers: int = 0) -> dict | None:
    """The production model's test accuracy on this very split, when that is a fair comparison."""
    ref = names.registry_ref(collection, names.PRODUCTION)
    # None only when there definitely is no production model; any other failure (network,
    # permission, organization) raises, so the gate never promotes without comparing.
    info = run.backend.lookup(ref)
    if info is None:
        return None
    # "version" is where production stood when the gate decided; promote() moves it only from there.
    if info.digest == model_version.digest:
        return {"ref": info.ref, "version": info.version, "same_model": True, "comparable": True}
    if info.metadata.get("dataset", {}).get("digest") != dataset.digest:
        return {"ref": info.ref, "version": info.version, "comparable": False}
    used = run.use(f"{names.REGISTRY}/{collection}:v{info.version}", names.MODEL_TYPE)
    model, recipe = load_model(used.path, device)
    probs = probabilities(model, split.images["test"], device, recipe, workers=workers)
    accuracy = float((probs.argmax(1) == split.labels["test"]).mean())
    return {"ref": used.ref, "version": info.version, "comparable": True, "test_accuracy": accuracy}


# How often a promotion decides again when `production` moved between its read and its write
# (another evaluate.py --promote landed first) before it gives up, nothing changed.
DECIDE_AGAIN = 3


def promote_if_still_better(run, model_version, collection, production: dict | None, decision, judge):
    """Promote as decided against `production`; when another promotion moved it meanwhile, read it
    again and decide again against the new one (`judge()` -> (production, decision)), at most
    DECIDE_AGAIN times. Returns (the promoted ref or None, the production decided against, the decision)."""
    for attempt in range(DECIDE_AGAIN + 1):
        if not decision.promote:
            return None, production, decision
        try:
            return promote(run, model_version, collection, production), production, decision
        except AliasMoved as moved:
            if attempt == DECIDE_AGAIN:
                raise UserError(f"{moved} It moved {DECIDE_AGAIN + 1} times while this model was compared with it; "
                                "run the step again when the other promotions are done.") from moved
            production, decision = judge()
            print(f"note: '{names.PRODUCTION}' moved to {production['ref'] if production else 'no version'} while "
                  f"this step ran (another promotion); decided again against it: {decision.reason}", file=sys.stderr)
    raise AssertionError("unreachable")


def consume_to_evaluate(run, model_version) -> bool:
    """After a promotion, `to_evaluate` has done its work: taken off the evaluated registry version
    (its lineage shows the evaluation instead), so a later evaluate.py never picks it again."""
    if names.TO_EVALUATE not in model_version.aliases or not model_version.ref.startswith(names.REGISTRY + "/"):
        return False
    return run.backend.remove_alias(model_version.ref, names.TO_EVALUATE)


def promote(run, model_version, collection, production: dict | None) -> str:
    """Move `production` to the evaluated model (linking it into the registry if needed), only if
    production still is where the gate saw it (`production`, None for none): a promotion decided
    against one state never lands on another (compare-and-set under the store's lock)."""
    guard = {names.PRODUCTION: production["version"] if production else None}
    if model_version.ref.startswith(names.REGISTRY + "/"):
        moved, _ = run.backend.set_alias(model_version.ref, names.PRODUCTION, guard=guard)
        return moved.ref
    return run.link(model_version.ref, collection, [names.PRODUCTION], guard=guard).ref
