"""What a script works on when --dataset is not given: found from what exists, as the
original project's scripts did (they had one dataset and one registry collection).

- train.py: the newest dataset artifact of the project;
- --retrain, evaluate.py, predict.py, serve.py: the registry collection of the newest dataset (as
  train.py chooses) whose versions carry the alias the step needs (candidate, to_evaluate,
  production); never another dataset's model without --dataset;
- --resume: the newest checkpoint of the newest baseline or --retrain run that stopped early.
When several fit, the error lists them and names the flag that picks one.
"""
from __future__ import annotations

import sys

from app import names
from app.cli import command
from app.errors import UserError

# Which step sets each alias, for the message when none carries it yet.
ALIAS_SET_BY = {
    names.CANDIDATE: "`train.py --tune` sets it on the best trial",
    names.TO_EVALUATE: "`train.py --retrain` sets it",
    names.PRODUCTION: "`evaluate.py --promote` sets it",
}


def dataset_name(backend, dataset: str | None) -> str:
    """--dataset when given, else the dataset of the project's newest dataset artifact."""
    if dataset:
        return dataset
    found = backend.find(names.DATASET_TYPE, names.LATEST, registry=False)
    if not found:
        raise UserError(f"no dataset artifact yet: run `{command('data_prep')} --dataset digits` "
                        "(or another --dataset) first, or pass --data REF.")
    newest = found[0]
    name = newest.metadata.get("dataset") or newest.name
    if len(found) > 1:
        others = ", ".join(v.ref for v in found[1:])
        print(f"using the newest dataset artifact, {newest.ref}; pass --dataset to pick another ({others}).",
              file=sys.stderr)
    return name


def _fits(collection: str, dataset: str | None, arch: str | None) -> bool:
    stem, _, suffix = collection.rpartition("-")
    return (dataset is None or stem == dataset) and (arch is None or suffix == arch)


def newest_dataset(backend) -> str | None:
    """The dataset of the project's newest dataset artifact (None: there is none)."""
    found = backend.find(names.DATASET_TYPE, names.LATEST, registry=False)
    return (found[0].metadata.get("dataset") or found[0].name) if found else None


def registry_model(backend, alias: str, dataset: str | None, arch: str | None) -> str:
    """`wandb-registry-model/<dataset>-<arch>:<alias>`: the flags name the collection; else the
    registry collection that carries `alias` among the newest dataset's (as train.py picks its
    dataset), or, where the project has no dataset artifact, among all. A collection of another
    dataset is never taken without --dataset: the error names it and the flag."""
    if dataset and arch:
        return names.registry_ref(names.model_artifact(dataset, arch), alias)
    chosen = dataset or newest_dataset(backend)
    carrying = backend.find(names.MODEL_TYPE, alias, registry=True)
    fits = [v for v in carrying if _fits(v.name, chosen, arch)]
    if len(fits) == 1:
        ref = names.registry_ref(fits[0].name, alias)
        why = "" if dataset else f", of the newest dataset {chosen}" if chosen else ""
        print(f"model: {ref} (the registry collection with {alias!r}{why})", file=sys.stderr)
        return ref
    given = " and ".join(f"--{k} {v}" for k, v in (("dataset", dataset), ("arch", arch)) if v)
    if not fits:
        if chosen and not dataset and carrying:
            others = ", ".join(f"{v.name} (--dataset {v.name.rpartition('-')[0]})" for v in carrying)
            raise UserError(
                f"no registry collection of the newest dataset, {chosen}, has a version with the alias {alias!r} "
                f"({ALIAS_SET_BY.get(alias, 'set it with registry.py alias')}); other datasets' do: {others}. "
                "Pick one with --dataset, or pass --model REF.")
        elsewhere = f" (with {given}; others: {', '.join(sorted(v.name for v in carrying))})" if carrying else ""
        raise UserError(
            f"no registry collection has a version with the alias {alias!r}{elsewhere}: "
            f"{ALIAS_SET_BY.get(alias, 'set it with registry.py alias')}, or link one with "
            f"`{command('registry')} link REF COLLECTION --alias {alias}`. "
            f"See `{command('registry')} list`."
        )
    raise UserError(
        f"several registry collections have a version with the alias {alias!r}: "
        f"{', '.join(sorted(v.name for v in fits))}. Pick one with --dataset (and --arch), or pass --model REF."
    )


def onnx_export(backend, model_version) -> "ArtifactVersion | None":
    """The ONNX export logged for this very model version (the same weights' digest), or None."""
    collection = names.onnx_artifact(model_version.name)
    if backend.lookup(f"{collection}:latest") is None:
        return None
    found = [v for v in backend.list(collection, lineage=False)
             if v.metadata.get("model_digest") == model_version.digest]
    return found[-1] if found else None


def newest_evaluation(backend, collection: str, model_digest: str) -> "ArtifactVersion | None":
    """The newest version of the evaluation collection `collection` that evaluated the model with
    this digest (its files fetched and verified), or None when it was never evaluated."""
    try:
        evaluations = [v for v in backend.list(collection, lineage=False)
                       if v.metadata.get("model_digest") == model_digest]
    except UserError:  # no evaluation collection yet
        return None
    if not evaluations:
        return None
    newest = max(evaluations, key=lambda v: v.version)
    return backend.fetch(newest.ref, names.EVALUATION_TYPE)


def stopped_early(checkpoint) -> bool:
    """A checkpoint version from before its run's last epoch: that run did not finish."""
    return checkpoint.metadata.get("epoch", 0) < checkpoint.metadata.get("epochs", 0)
