"""`train.py`: train a model on a dataset artifact and log it, alone, as a sweep's trial (the
trial's identity in its environment: app/tuning/trial.py) or as one of torchrun's processes."""
from __future__ import annotations

import os
from dataclasses import replace

from app import names
from app.errors import UserError
from app.jobs import TrainRequest, report
from app.progress import detail
from app.recipe.config import from_flags, step_budget, trial_epochs, unset_flags, with_dataset_defaults


def dataset_of(data_ref: str | None) -> str:
    """The dataset name: that of --data when given, else of the newest dataset artifact."""
    from app.tracking import backend, discovery

    if data_ref:
        return backend().peek(data_ref, names.DATASET_TYPE).metadata.get("dataset")
    return discovery.dataset_name(backend(), None)


def train_baseline(request: TrainRequest) -> None:
    from app.jobs.resume import resumed_from
    from app.training import distributed
    from app.training.engine import pick_device
    from app.training.workflow import recipe_for, train_and_log
    from app.tracking import SilentRun, backend, start_run
    from app.tuning.trial import current_trial

    config = from_flags(request.arch, request.epochs, request.hyperparameters)
    sweep_trial = current_trial()  # from the environment, which every torchrun rank inherits
    data_ref = request.data or names.dataset_artifact(request.dataset)
    metadata = backend().peek(data_ref, names.DATASET_TYPE).metadata
    if config.epochs is None and sweep_trial is not None:  # a `wandb agent` trial of a file without epochs
        config = replace(config, epochs=trial_epochs(request.arch, metadata))  # as --tune fixes them
        detail(f"epochs: {config.epochs}, as every trial of a sweep whose file names none (about "
               f"{step_budget('none')} steps at batch size 64; `epochs` in the sweep file sets them)")
    # Defaults that depend on the data are settled before the run's config is logged, never after.
    chosen = config
    config = with_dataset_defaults(config, metadata, int(os.environ.get("WORLD_SIZE", "1")),
                                   unset_flags(request.hyperparameters))
    changed = {k: v for k, v in config.hyperparameters().items() if k != "augment" and v != getattr(chosen, k)}
    if changed:
        detail(f"the convnet's defaults on an augmented split: {', '.join(f'{k} {v}' for k, v in changed.items())}"
               " (flags set them)")
    if chosen.epochs is None:
        detail(f"epochs: {config.epochs}, for about {step_budget(config.augment)} steps over this training split "
               f"(augment {config.augment}; --epochs sets them)")
    device = distributed.device_for(pick_device(request.device))
    group = distributed.setup(device)  # under torchrun: one process of several, else alone
    trial = sweep_trial if group.is_main else None  # rank 0 speaks for the trial
    run_config = {"arch": request.arch, "epochs": config.epochs, "data": data_ref, **config.hyperparameters(),
                  "world_size": group.world_size, "precision": request.options.precision,
                  "compile": request.options.compile}

    def train_on(run, dataset, resumed=None):
        return train_and_log(
            run, recipe_for(config, dataset), dataset_version=dataset, device=device, group=group,
            options=request.options, checkpoints=request.checkpoints,
            extra_metadata={"sweep": trial.metadata()} if trial else {},
            should_stop=trial.report_epoch if trial else None, resume_state=resumed.state if resumed else None,
            announce=trial is None,  # a sweep's agent has announced its trial
        )

    if config.model.get("pretrained") and group.is_main:
        from app.models import fetch_pretrained

        fetch_pretrained(config.arch)  # before any run: no network is an error that logs nothing
    try:
        if group.is_main:  # owns the W&B run: uses the dataset on its behalf, logs the one model
            # A sweep trial that was killed is re-run by its controller from its checkpoint, in its own run.
            resume_id = trial.resume_run if trial else None
            with start_run("sweep_trial" if trial else "train", run_config, group=trial.group if trial else None,
                           resume_id=resume_id, announce=trial is None) as run:
                if trial:
                    trial.started(run.id)
                resumed = resumed_from(backend(), resume_id) if resume_id else None
                if resumed and resumed.recipe.config != config:
                    raise UserError(f"refused checkpoint {resumed.ref}: its recipe is not this trial's; the trial "
                                    "starts anew if its checkpoints are removed.")
                dataset = run.use(resumed.recipe.dataset.ref if resumed else data_ref, names.DATASET_TYPE)
                if resumed:
                    resumed.check_dataset(dataset)
                distributed.broadcast(group, (dataset.ref, dataset.digest, resume_id))
                run.update_config({"dataset_ref": dataset.ref, "dataset_digest": dataset.digest})
                logged, history = train_on(run, dataset, resumed)
                if trial:
                    trial.finish(logged.ref if logged else None)
        else:  # torchrun's other ranks: the very version rank 0 uses, verified; nothing logged
            ref, digest, resume_id = distributed.broadcast(group, None)
            dataset = backend().fetch(ref, names.DATASET_TYPE)
            if dataset.digest != digest:
                raise UserError(f"rank {group.rank} found {ref} with another digest than rank 0; is the "
                                "artifact store shared between the machines? (PIPELINE_STORE_DIR)")
            train_on(SilentRun(), dataset, resumed_from(backend(), resume_id) if resume_id else None)
    finally:
        distributed.shutdown(group)
    if group.is_main:
        report(logged, history)
