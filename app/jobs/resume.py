"""`train.py --resume [RUN_ID]`: a stopped baseline or --retrain run goes on where it stopped.
Every step of resuming, in order, and where it happens:

1. which checkpoint (`stopped_run_checkpoint`): RUN_ID's newest version of `checkpoint-<run id>`,
   else the newest checkpoint of any run that stopped before its last epoch; what to go on with
   is in its metadata (run id, job type, epoch, epochs), written by the run's CheckpointKeeper
   (app/training/checkpoint.py), which also decides which versions exist. A sweep's trial is
   resumed by its sweep instead (the controller names the run: app/tuning/trial.py), through
   steps 2-5 in app/jobs/baseline.py;
2. the same W&B run (`start_run(resume_id=...)`): the process holds the run (a second process
   resuming it is refused), W&B continues it (online the same run, offline a new folder with the
   same id);
3. the checkpoint loaded and verified (`resumed_from`): its recipe, and its training state
   (weights, optimizer, scheduler, random states, history) refused with the reason when damaged
   or when the weights do not fit the recipe's model;
4. the dataset version it trained on, by its digest (`Resumed.check_dataset`);
5. training from that state (engine.fit restores it and runs the epochs left: the same model, bit
   for bit on the CPU, as a run never stopped), then the end of any run: the model logged, the
   checkpoints deleted, a retrain linked as `to_evaluate`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from app import names
from app.errors import UserError
from app.jobs import TrainRequest, report
from app.recipe import Recipe


def resume_stopped_run(request: TrainRequest) -> None:
    from app.jobs.retrain import link_to_evaluate
    from app.training.engine import pick_device
    from app.training.workflow import train_and_log
    from app.tracking import backend, start_run

    if request.epochs or any(v is not None for v in request.hyperparameters.values()):
        raise UserError("--resume continues the stopped run with its own recipe and epoch count; drop the "
                        "training flags (train a new baseline to change them).")
    found = stopped_run_checkpoint(backend(), request.resume)  # 1
    meta = found.metadata
    with start_run(meta["job_type"], {"resumed_from": found.ref}, resume_id=meta["run_id"]) as run:  # 2
        resumed = resumed_from(backend(), meta["run_id"])  # 3
        dataset = run.use(resumed.recipe.dataset.ref, names.DATASET_TYPE)
        resumed.check_dataset(dataset)  # 4
        print(f"resuming run {meta['run_id']} from {resumed.ref} (epoch {resumed.state['epoch']} of {meta['epochs']})",
              file=sys.stderr)
        logged, history = train_and_log(  # 5
            run, resumed.recipe, dataset_version=dataset, device=pick_device(request.device),
            extra_metadata={**meta.get("extra", {}), "resumed_from": resumed.ref}, options=request.options,
            checkpoints=request.checkpoints, resume_state=resumed.state,
        )
        if meta["job_type"] == "retrain":
            linked = link_to_evaluate(run, logged, resumed.recipe)
            print(f"registry: {linked.ref} [{', '.join(linked.aliases)}]")
    report(logged, history)


def stopped_run_checkpoint(backend, run_id: str | None):
    """Step 1: the newest checkpoint of `run_id`, or of the newest run that stopped early."""
    from app.tracking.discovery import stopped_early

    if run_id:
        found = backend.peek(f"{names.checkpoint_artifact(run_id)}:latest", names.CHECKPOINT_TYPE)
        if not stopped_early(found):
            raise UserError(f"run {run_id} finished all its {found.metadata.get('epochs')} epochs ({found.ref}); "
                            "there is nothing to resume.")
        if found.metadata.get("job_type") not in ("train", "retrain"):
            raise UserError(f"run {run_id} is a {found.metadata.get('job_type')} run; --resume continues baseline "
                            "and --retrain runs (a sweep resumes with `--tune --sweep-id ID`).")
        return found
    stopped = [c for c in backend.find(names.CHECKPOINT_TYPE, names.LATEST, registry=False)
               if stopped_early(c) and c.metadata.get("job_type") in ("train", "retrain")]
    if not stopped:
        raise UserError("no stopped run to resume: every run with checkpoints finished its epochs (or none saved "
                        "any; --checkpoint-every). Name one with --resume RUN_ID.")
    return stopped[0]


@dataclass
class Resumed:
    """A stopped run's newest checkpoint, loaded: what train_and_log continues from."""

    ref: str
    recipe: Recipe
    state: dict

    def check_dataset(self, dataset_version) -> None:
        """Step 4: the dataset version the checkpoint was trained on, by digest."""
        trained_on = self.recipe.dataset
        if dataset_version.digest != trained_on.digest:
            raise UserError(f"refused checkpoint {self.ref}: {dataset_version.ref} is not the dataset version it was "
                            f"trained on ({trained_on.ref}, digest {trained_on.digest}); train anew.")


def resumed_from(connected, run_id: str) -> Resumed:
    """Step 3: the newest checkpoint of `run_id`, verified and loaded (a damaged or foreign one is
    refused). Fetched, not used: it is the run's own output, not one of its inputs."""
    from app.training.checkpoint import load_training_state

    checkpoint = connected.fetch(f"{names.checkpoint_artifact(run_id)}:latest", names.CHECKPOINT_TYPE)
    recipe = Recipe.load(checkpoint.path)
    return Resumed(checkpoint.ref, recipe, load_training_state(checkpoint.path, recipe, checkpoint.ref))
