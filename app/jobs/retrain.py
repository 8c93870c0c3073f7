"""`train.py --retrain`: the registry's candidate trained again with its locked recipe, to the
dataset's full budget (or --epochs), and linked into its collection as `to_evaluate`."""
from __future__ import annotations

from app import names
from app.cli import command
from app.errors import UserError
from app.jobs import TrainRequest, report


def retrain_candidate(request: TrainRequest, settings) -> None:
    from app.models.files import WEIGHTS_FILE, load_weights
    from app.recipe import Recipe
    from app.recipe.config import retrain_epochs
    from app.training.engine import pick_device
    from app.training.workflow import repeats_candidate, train_and_log
    from app.tracking import backend, discovery, start_run

    model_ref = (request.model or settings.model_retrain
                 or discovery.registry_model(backend(), names.CANDIDATE, request.dataset, request.arch))
    candidate_metadata = backend().peek(model_ref, names.MODEL_TYPE).metadata
    # Refuse a changed hyperparameter before any run starts, so a refusal changes nothing.
    locked = Recipe.from_dict(candidate_metadata)  # the metadata holds the recipe's keys
    locked.check_locked(request.hyperparameters)
    # --epochs when given (more or fewer, on purpose), else the dataset's full budget.
    epochs = request.epochs or retrain_epochs(locked.config,
                                              backend().peek(locked.dataset.ref, names.DATASET_TYPE).metadata)
    device = pick_device(request.device)
    if not request.warm_start and repeats_candidate(candidate_metadata, epochs, device, request.options):
        return link_candidate(model_ref, locked, epochs, device)
    with start_run("retrain", {"model": model_ref, "epochs": epochs, "warm_start": request.warm_start,
                               "precision": request.options.precision, "compile": request.options.compile}) as run:
        candidate = run.use(model_ref, names.MODEL_TYPE)
        # the candidate's configuration, every key explicit (recipes from before a key: what they did)
        recipe = Recipe.load(candidate.path).with_epochs(epochs)
        run.update_config({"candidate": candidate.ref, "arch": recipe.arch, **recipe.config.hyperparameters()})
        dataset = run.use(recipe.dataset.ref, names.DATASET_TYPE)
        if dataset.digest != recipe.dataset.digest:
            raise UserError(f"{dataset.ref} no longer has the digest the candidate was trained on; "
                            "the dataset version was replaced, so the retrain would not be comparable.")
        init_state = load_weights(candidate.path / WEIGHTS_FILE) if request.warm_start else None
        logged, history = train_and_log(
            run, recipe, dataset_version=dataset, device=device,
            extra_metadata={"retrained_from": candidate.ref, "warm_start": request.warm_start},
            init_state=init_state, options=request.options, checkpoints=request.checkpoints,
        )
        linked = link_to_evaluate(run, logged, recipe)
    report(logged, history)
    print(f"registry: {linked.ref} [{', '.join(linked.aliases)}]  (retrained from {candidate.ref})")


def link_candidate(model_ref: str, recipe, epochs: int, device) -> None:
    """--retrain when training again would repeat the candidate (workflow.repeats_candidate): the
    candidate itself becomes `to_evaluate`, in a run that records the decision, within seconds."""
    from app.tracking import start_run

    with start_run("retrain", {"model": model_ref, "epochs": epochs, "trained": False}) as run:
        candidate = run.use(model_ref, names.MODEL_TYPE)
        run.summary({"trained": False})
        linked = link_to_evaluate(run, candidate, recipe)
    print(f"not retrained: {candidate.ref} was trained with this very recipe ({recipe.dataset.ref}, "
          f"{epochs} epochs on {device.type}), so training it again would log the same "
          f"model; the candidate itself is now to_evaluate. To train it longer: {command('train')} --retrain "
          f"--epochs N (N > {epochs}).")
    print(f"registry: {linked.ref} [{', '.join(linked.aliases)}]")


def link_to_evaluate(run, logged, recipe):
    """A retrained model (or the candidate itself) into its registry collection, as `to_evaluate`."""
    return run.link(logged.ref, names.model_artifact(recipe.dataset.name, recipe.arch), [names.TO_EVALUATE])
