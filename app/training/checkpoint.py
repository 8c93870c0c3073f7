"""A run's checkpoints: a checkpoint artifact's files (the whole training state,
`training_state.pt`: weights, optimizer, scheduler, random states, history, beside the recipe it
continues) and the one keeper of its versions (CheckpointKeeper). A model's own files (weights and
recipe) are app/models/files.py's."""
from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import torch

from app import names
from app.cli import command
from app.errors import RESUME, UserError, summary
from app.models import build_model
from app.progress import detail
from app.recipe import RECIPE_FILE, Recipe
from app.recipe.config import CheckpointOptions

STATE_FILE = "training_state.pt"


def save_training_state(state: dict, recipe: Recipe, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE_FILE)
    return {STATE_FILE: folder / STATE_FILE, RECIPE_FILE: recipe.save(folder)}


def load_training_state(folder: Path, recipe: Recipe, ref: str) -> dict:
    """A checkpoint's training state, refused with the reason when it is damaged or does not
    fit `recipe`'s model (another architecture or size): nothing is trained from it then."""
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise UserError(f"refused checkpoint {ref}: {STATE_FILE} is damaged or not a training state saved by this "
                        f"project ({summary(err)}). Resume from another version, or train anew.") from err
    needed = {"epoch", "model", "optimizer", "scheduler", "shuffle_rng", "torch_rng", "history", "best_accuracy"}
    if not isinstance(state, dict) or not needed <= set(state):
        raise UserError(f"refused checkpoint {ref}: {STATE_FILE} is not a training state saved by this project "
                        f"(it lacks {', '.join(sorted(needed - set(state if isinstance(state, dict) else {})))}).")
    try:
        build_model(recipe).load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError, KeyError) as err:
        raise UserError(f"refused checkpoint {ref}: its weights do not fit the {recipe.arch!r} model of its "
                        f"recipe ({summary(err)}); it was saved by another model. Train anew.") from err
    return state


class CheckpointKeeper:
    """A run's checkpoint versions (`checkpoint-<run id>`), kept as timm's CheckpointSaver keeps its
    files; every decision about which of them exist is made here, the backend only lists and
    deletes:

    - `save`: one version per call (engine.fit calls it every `--checkpoint-every` epochs and after
      the last), alias `best` on the best epoch's; then the versions beyond the newest
      `options.keep` deleted, except the one `best` holds (as CheckpointSaver's max_history);
    - `finish`: once the run has logged its model (which holds the best weights) or a sweep
      stopped it, every version deleted unless `options.keep_after` (`--keep-checkpoints K`):
      nothing resumes a finished run.

    `run` is an app.tracking Run (SilentRun on torchrun's other ranks: nothing to keep there)."""

    def __init__(self, run, recipe: Recipe, options: CheckpointOptions, extra_metadata: dict):
        self.run, self.recipe, self.options, self.extra_metadata = run, recipe, options, extra_metadata
        self.name = names.checkpoint_artifact(run.id)

    def save(self, state: dict, is_best: bool) -> None:
        """Its metadata says what `train.py --resume` needs to go on: the run, its job and the epoch."""
        job_type = self.run.lineage_entry()["job_type"]
        metadata = {"run_id": self.run.id, "job_type": job_type, "epoch": state["epoch"],
                    "epochs": self.recipe.config.epochs, "best_val_accuracy": state["best_accuracy"],
                    "dataset": self.recipe.to_dict()["dataset"], "extra": self.extra_metadata}
        with tempfile.TemporaryDirectory() as tmp:
            files = save_training_state(state, self.recipe, Path(tmp))
            logged = self.run.log_artifact(self.name, names.CHECKPOINT_TYPE, files, metadata,
                                           [names.BEST] if is_best else [])
        deleted = self._delete(keep=self.options.keep)
        if job_type in ("train", "retrain"):  # a sweep trial resumes through its sweep
            RESUME["command"] = f"{command('train')} --resume {self.run.id}"
        detail(f"checkpoint: {logged.ref} (epoch {state['epoch']}{', best so far' if is_best else ''})"
               + (f"; deleted {', '.join(f'v{v}' for v in deleted)}" if deleted else ""))

    def finish(self) -> None:
        RESUME["command"] = None  # finished: nothing to resume
        if self.options.every and not self.options.keep_after:
            deleted = self._delete(keep=None)
            if deleted:
                detail(f"checkpoints of run {self.run.id} deleted ({len(deleted)} version(s)): the run finished")

    def _delete(self, keep: int | None) -> list[int]:
        """Beyond the newest `keep` live versions, those no alias but `latest` holds; None: all."""
        versions = sorted(self.run.versions(self.name), key=lambda v: v.version)
        if keep is None:
            doomed = versions
        else:
            doomed = [v for v in (versions[:-keep] if keep > 0 else versions) if not set(v.aliases) - {names.LATEST}]
        self.run.delete(doomed, with_aliases=keep is None)
        return [v.version for v in doomed]
