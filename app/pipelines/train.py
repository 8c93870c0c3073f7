"""Train an image classifier on a dataset artifact and log it as a model artifact.

    python app/pipelines/train.py --dataset digits --epochs 15          # baseline
    python app/pipelines/train.py --dataset digits --tune --max_sweep 6 # Bayesian sweep -> "candidate"
    python app/pipelines/train.py --dataset digits --retrain --epochs 15  # candidate -> "to_evaluate"

Hyperparameters, the architectures' own settings included, default to TrainConfig's values
(app/recipe/config.py); `--help` lists each with its default.
"""
from __future__ import annotations

import os
import sys

from app import names
from app.cli import Parser, command, non_negative_int, positive_int
from app.errors import UserError, exits_cleanly, speak_on_rank_0_only
from app.progress import detail
from app.recipe.config import (PRECISIONS, STEP_BUDGET, CheckpointOptions, DeviceOptions, TrainConfig, add_flags,
                                 hyperparameter_names, stream_workers)


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=names.dataset_name, default=None,
                   help="dataset the model is for (default: that of the newest dataset artifact; --retrain: "
                        "the registry collection with 'candidate')")
    p.add_argument("--arch", choices=names.ARCHITECTURES, default=None,
                   help=f"architecture, app/models/ (default: {TrainConfig.arch}; --retrain: the candidate's)")
    p.add_argument("--data", metavar="REF", help="dataset artifact ref (default: <dataset>-split:latest)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs to train (default: about {STEP_BUDGET} optimizer steps' worth, from the training split's size; "
                        "--retrain: that full budget for the candidate's batch size, at least its own count)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device")
    p.add_argument("--precision", choices=PRECISIONS, default=DeviceOptions.precision,
                   help="auto: bf16 autocast (and channels_last for convolutions) on a CUDA GPU, fp32 on the CPU")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile (minutes of compiling first; on the CPU a C++ compiler)")
    p.add_argument("--stream", nargs="?", type=non_negative_int, const=stream_workers(), default=None,
                   metavar="WORKERS",
                   help="read the split from its files batch by batch in WORKERS DataLoader processes (default "
                        f"{stream_workers()}) instead of holding it in memory: for a split larger than memory")
    add_flags(p.add_argument_group("hyperparameters (default: TrainConfig in app/recipe/config.py)"))
    saving = p.add_argument_group("checkpoints (resumable training state, W&B artifacts checkpoint-<run id>)")
    saving.add_argument("--checkpoint-every", type=non_negative_int, default=CheckpointOptions.every, metavar="N",
                        help="save the training state every N epochs and after the last; 0: never")
    saving.add_argument("--keep-checkpoints", type=positive_int, default=None, metavar="K",
                        help=f"keep the newest K checkpoint versions (and the best epoch's) after the run too (default: "
                             f"{CheckpointOptions.keep} while it trains, none once it has logged its model)")
    saving.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_ID",
                        help="continue a stopped run (baseline or --retrain) from its newest checkpoint, in the same "
                             "W&B run (default: the newest run that did not finish)")
    flow = p.add_argument_group("tuning and retraining")
    flow.add_argument("--tune", action="store_true", help="run a Bayesian sweep over sweep.yaml")
    flow.add_argument("--max-sweep", type=positive_int, default=None,
                      help="--tune: the sweep's size in trials (its run_cap), fixed when it is created and kept "
                           "when agents join or resume it (default: the sweep file's run_cap, else 30)")
    flow.add_argument("--count", type=positive_int, default=None,
                      help="--tune: trials this agent runs at most, as `wandb agent --count` (default: until the "
                           "sweep has its size)")
    flow.add_argument("--sweep-id", help="--tune: join this sweep instead of creating one")
    flow.add_argument("--sweep-config", default=None,
                      help=f"--tune: the sweep definition (default: sweep.yaml for {TrainConfig.arch}, sweep-<arch>.yaml for the "
                           "others)")
    flow.add_argument("--no-link", action="store_true", help="--tune: do not link the best trial as 'candidate'")
    flow.add_argument("--retrain", action="store_true",
                      help="retrain the registry's candidate with its own recipe to the full budget and link it as "
                           "'to_evaluate' (a candidate already trained so is linked itself, without training again)")
    flow.add_argument("--model", metavar="REF", help="--retrain: model ref (default: WANDB_MODEL_RETRAIN, "
                      "else wandb-registry-model/<dataset>-<arch>:candidate)")
    flow.add_argument("--warm-start", action="store_true",
                      help="--retrain: start from the candidate's weights instead of from scratch")
    args = p.parse_args(argv)
    if sum(map(bool, (args.tune, args.retrain, args.resume is not None))) > 1:
        p.error("--tune, --retrain and --resume are separate steps; run one at a time")
    return args


def given_hyperparameters(args) -> dict:
    return {k: getattr(args, k) for k in hyperparameter_names()}


def device_options(args) -> DeviceOptions:
    return DeviceOptions(precision=args.precision, compile=args.compile, stream=args.stream)


def checkpoint_options(args) -> CheckpointOptions:
    return CheckpointOptions(every=args.checkpoint_every, keep=args.keep_checkpoints or CheckpointOptions.keep,
                             keep_after=args.keep_checkpoints is not None)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    speak_on_rank_0_only()
    from app.tracking.settings import load_settings

    settings = load_settings()
    if (args.retrain or args.tune or args.resume is not None) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--retrain, --tune and --resume run as one process; under torchrun, run plain training "
                        "(a sweep's trials can be torchrun jobs: see the README's torchrun section).")
    if args.retrain:
        return retrain(args, settings)
    if args.resume is not None:
        return resume(args)
    args.arch = args.arch or TrainConfig.arch
    args.dataset = args.dataset or dataset_of(args.data)
    if args.tune:
        from app.tuning.run import tune

        return tune(args, settings)
    return baseline(args)


def dataset_of(data_ref: str | None) -> str:
    """The dataset name: that of --data when given, else of the newest dataset artifact."""
    from app.tracking import backend, discovery

    if data_ref:
        return backend().peek(data_ref, names.DATASET_TYPE).metadata.get("dataset")
    return discovery.dataset_name(backend(), None)


def baseline(args) -> None:
    from app.training import distributed
    from app.training.engine import pick_device
    from app.recipe.config import from_flags, with_dataset_defaults
    from app.training.workflow import recipe_for, resumed_from, train_and_log
    from app.tracking import SilentRun, backend, start_run
    from app.tuning.trial import current_trial

    config = from_flags(args.arch, args.epochs, given_hyperparameters(args))
    data_ref = args.data or names.dataset_artifact(args.dataset)
    # Defaults that depend on the data are settled before the run's config is logged, never after.
    config = with_dataset_defaults(config, backend().peek(data_ref, names.DATASET_TYPE).metadata,
                                   int(os.environ.get("WORLD_SIZE", "1")))
    if args.epochs is None:
        detail(f"epochs: {config.epochs}, for about {STEP_BUDGET} steps over this training split (--epochs sets them)")
    device = distributed.device_for(pick_device(args.device))
    group = distributed.setup(device)  # under torchrun: one process of several, else alone
    trial = current_trial() if group.is_main else None
    run_config = {"arch": args.arch, "epochs": config.epochs, "data": data_ref, **config.hyperparameters(),
                  "world_size": group.world_size, "precision": args.precision, "compile": args.compile}

    def train_on(run, dataset, resumed=None):
        return train_and_log(
            run, recipe_for(config, dataset), dataset_version=dataset, device=device, group=group, options=device_options(args),
            checkpoints=checkpoint_options(args),
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


def retrain(args, settings) -> None:
    from app.models.files import WEIGHTS_FILE, load_weights
    from app.recipe import Recipe
    from app.recipe.config import retrain_epochs
    from app.training.engine import pick_device
    from app.training.workflow import repeats_candidate, train_and_log
    from app.tracking import backend, discovery, start_run

    model_ref = (args.model or settings.model_retrain
                 or discovery.registry_model(backend(), names.CANDIDATE, args.dataset, args.arch))
    candidate_metadata = backend().peek(model_ref, names.MODEL_TYPE).metadata
    # Refuse a changed hyperparameter before any run starts, so a refusal changes nothing.
    locked = Recipe.from_dict(candidate_metadata)  # the metadata holds the recipe's keys
    locked.check_locked(given_hyperparameters(args))
    # --epochs when given (more or fewer, on purpose), else the dataset's full budget.
    epochs = args.epochs or retrain_epochs(locked.config, backend().peek(locked.dataset.ref, names.DATASET_TYPE).metadata)
    device = pick_device(args.device)
    if not args.warm_start and repeats_candidate(candidate_metadata, epochs, device, device_options(args)):
        return link_candidate(model_ref, locked, epochs, device)
    with start_run("retrain", {"model": model_ref, "epochs": epochs, "warm_start": args.warm_start,
                               "precision": args.precision, "compile": args.compile}) as run:
        candidate = run.use(model_ref, names.MODEL_TYPE)
        # the candidate's configuration, every key explicit (recipes from before a key: what they did)
        recipe = Recipe.load(candidate.path).with_epochs(epochs)
        run.update_config({"candidate": candidate.ref, "arch": recipe.arch, **recipe.config.hyperparameters()})
        dataset = run.use(recipe.dataset.ref, names.DATASET_TYPE)
        if dataset.digest != recipe.dataset.digest:
            raise UserError(f"{dataset.ref} no longer has the digest the candidate was trained on; "
                            "the dataset version was replaced, so the retrain would not be comparable.")
        init_state = load_weights(candidate.path / WEIGHTS_FILE) if args.warm_start else None
        logged, history = train_and_log(
            run, recipe, dataset_version=dataset, device=device,
            extra_metadata={"retrained_from": candidate.ref, "warm_start": args.warm_start},
            init_state=init_state, options=device_options(args), checkpoints=checkpoint_options(args),
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


def resume(args) -> None:
    """Continue a stopped baseline or --retrain run from its newest checkpoint: the same W&B
    run, the checkpoint's recipe and dataset version, the epochs it had left; one model at the end."""
    from app.training.engine import pick_device
    from app.training.workflow import resumed_from, train_and_log
    from app.tracking import backend, discovery, start_run

    if args.epochs or any(v is not None for v in given_hyperparameters(args).values()):
        raise UserError("--resume continues the stopped run with its own recipe and epoch count; drop the "
                        "training flags (train a new baseline to change them).")
    found = discovery.stopped_run_checkpoint(backend(), args.resume)
    meta = found.metadata
    with start_run(meta["job_type"], {"resumed_from": found.ref}, resume_id=meta["run_id"]) as run:
        resumed = resumed_from(backend(), meta["run_id"])
        dataset = run.use(resumed.recipe.dataset.ref, names.DATASET_TYPE)
        resumed.check_dataset(dataset)
        print(f"resuming run {meta['run_id']} from {resumed.ref} (epoch {resumed.state['epoch']} of {meta['epochs']})",
              file=sys.stderr)
        recipe = resumed.recipe
        logged, history = train_and_log(
            run, recipe, dataset_version=dataset, device=pick_device(args.device),
            extra_metadata={**meta.get("extra", {}), "resumed_from": resumed.ref}, options=device_options(args),
            checkpoints=checkpoint_options(args), resume_state=resumed.state,
        )
        if meta["job_type"] == "retrain":
            linked = link_to_evaluate(run, logged, recipe)
            print(f"registry: {linked.ref} [{', '.join(linked.aliases)}]")
    report(logged, history)


def report(logged, history) -> None:
    from app.training.engine import best_epoch

    kept = best_epoch(history)
    saved = history[kept - 1]
    print(f"model artifact: {logged.ref if logged else '(none: the sweep stopped this trial)'}  "
          f"epochs {len(history)}, weights of epoch {kept} (best validation): val accuracy "
          f"{saved['val/accuracy']:.4f}, val loss {saved['val/loss']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
