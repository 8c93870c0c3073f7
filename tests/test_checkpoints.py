"""Training that survives being killed: checkpoint artifacts, --resume, retention."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from app.errors import UserError
from app.models import build_model
from app.training import engine
from app.training.checkpoint import load_training_state, save_training_state
from app.recipe.config import TrainConfig, from_flags
from conftest import SCRIPTS, recipe_of


def digits_like(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = (rng.random((n, 8, 8)) * 60 + labels[:, None, None] * 60).astype(np.uint8)
    return engine.to_tensors(images, labels, torch.device("cpu"))


def small_recipe(arch: str):
    return recipe_of(from_flags(arch, 4, {}), [1, 8, 8], ["a", "b", "c"], {"ref": "x:v0", "digest": "d", "name": "x"})


def test_fit_resumed_from_a_saved_state_ends_with_the_weights_of_an_uninterrupted_fit(tmp_path):
    """engine level: 4 epochs at once, and 2 + 2 through a state saved to disk and loaded back
    with weights_only=True, end bit for bit the same (dropout, batch order, AdamW, schedule)."""
    data = digits_like()
    config = TrainConfig(arch="cnn", epochs=4, batch_size=32, warmup=0.2, schedule="cosine", augment="crop")
    saved = {}

    def run(resume=None, stop_after=None):
        engine.seed_everything(0)
        model = build_model(small_recipe("cnn"))

        def save(state, is_best):
            saved[state["epoch"]] = save_training_state(state, small_recipe("cnn"), tmp_path / f"e{state['epoch']}")

        history = engine.fit(model, data, data, config, progress=False,
                             on_epoch=(lambda r: r["epoch"] == stop_after) if stop_after else None,
                             checkpoint=engine.Checkpointing(save=save, every=1, resume=resume))
        return model, history

    whole, whole_history = run()
    state = load_training_state(tmp_path / "e2", small_recipe("cnn"), "e2")
    resumed, resumed_history = run(resume=state)
    assert [h["epoch"] for h in resumed_history] == [1, 2, 3, 4]  # epochs 1-2 from the state, 3-4 trained
    assert resumed_history[:2] == whole_history[:2]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path):
    data = digits_like(60)
    states = []
    model = build_model(small_recipe("mlp"))
    engine.fit(model, data, data, TrainConfig(arch="mlp", epochs=1, batch_size=32), progress=False,
               checkpoint=engine.Checkpointing(save=lambda s, best: states.append(s)))
    save_training_state(states[0], small_recipe("mlp"), tmp_path / "mlp")
    with pytest.raises(UserError, match="do not fit the 'cnn' model"):  # another architecture's state
        load_training_state(tmp_path / "mlp", small_recipe("cnn"), "checkpoint-x:v0")
    (tmp_path / "mlp" / "training_state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="refused checkpoint checkpoint-x:v0: training_state.pt is damaged"):
        load_training_state(tmp_path / "mlp", small_recipe("mlp"), "checkpoint-x:v0")


def test_offline_checkpoints_leave_no_copy_in_wandbs_staging_folder(workspace):
    """W&B stages a copy of each file of an artifact it will upload (offline: for `wandb sync`) and
    deletes the copy once uploaded. An offline checkpoint is never logged to the W&B run, so a staged
    copy of it would stay for good: every epoch's training state of every offline run (72 GB on the VM
    this was built on). Only the files of the versions the offline runs log are staged."""
    from pathlib import Path

    from app.tracking.sdk_internals import file_digest

    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    ws.run("train", "--epochs", "2", "--keep-checkpoints", "2")  # both epochs' checkpoints kept to compare
    staged = {file_digest(f) for f in (Path(ws.env["WANDB_DATA_DIR"]) / "artifacts" / "staging").glob("tmp*")
              if f.is_file()}
    collections = [json.loads(p.read_text())
                   for p in (ws.store / "collections" / "wandb-image-pipeline").glob("*.json")]
    logged = {digest for c in collections if c["type"] != "checkpoint" for v in c["versions"]
              for digest in v["manifest"].values()}
    kept = {digest for c in collections if c["type"] == "checkpoint" for v in c["versions"]
            for digest in v["manifest"].values()}
    # staged: the logged versions' files, and W&B's own of the run (its tables); no checkpoint's file
    assert staged & logged and len(kept - logged) >= 2 and not staged & (kept - logged), (staged, logged, kept)


def checkpoints_of(ws) -> dict:
    [path] = (ws.store / "collections" / "wandb-image-pipeline").glob("checkpoint-*.json")
    return json.loads(path.read_text())


# a long fault run (make test-slow); make test keeps test_a_killed_retrain_resumes... and
# test_fit_resumed_from_a_saved_state... (the engine's bit-for-bit resume)
@pytest.mark.slow
def test_killed_after_epoch_3_of_6_resumes_without_rerunning_and_ends_as_if_never_killed(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    train = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "-v", "--epochs", "6", "--seed", "3"],
                             cwd=ws.path, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in train.stderr:
        if line.startswith("checkpoint:") and "(epoch 3" in line:
            train.send_signal(signal.SIGKILL)  # as a preempted machine: no clean-up of any kind
            break
    assert train.wait(timeout=120) == -signal.SIGKILL
    killed = checkpoints_of(ws)
    run_id = killed["name"].removeprefix("checkpoint-")
    assert killed["versions"][killed["aliases"]["latest"]]["metadata"]["epoch"] == 3

    resumed = ws.run("train", "--resume")
    assert f"resuming run {run_id} from checkpoint-{run_id}:v2 (epoch 3 of 6)" in resumed.stderr
    assert "resumed after epoch 3/6" in resumed.stderr
    assert not any(f"epoch {e}/6 " in resumed.stderr for e in (1, 2, 3)) and "epoch 6/6 " in resumed.stderr
    assert len(list((ws.path / "wandb").glob(f"offline-run-*-{run_id}*"))) == 2  # the same W&B run id, continued
    # One final model, and an uninterrupted run of the same recipe writes the very same files:
    # the store's digest dedup gives it the same version.
    model_ref = resumed.stdout.split("model artifact: ")[1].split()[0]
    uninterrupted = ws.run("train", "--epochs", "6", "--seed", "3", "--checkpoint-every", "0")
    assert uninterrupted.stdout.split("model artifact: ")[1].split()[0] == model_ref == "digits-convnet:v0"
    assert ws.run("train", "--resume", check=False).returncode == 2  # nothing left to resume


def test_only_the_newest_checkpoints_and_the_best_are_kept(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    out = ws.run("train", "-v", "--arch", "mlp", "--epochs", "5", "--keep-checkpoints", "1").stderr
    coll = checkpoints_of(ws)  # --keep-checkpoints given: kept after the run too
    live = [v for v in coll["versions"] if not v.get("deleted")]
    best = coll["aliases"]["best"]
    assert {v["version"] for v in live} == {4, best} and len(coll["versions"]) == 5
    for version in coll["versions"]:
        assert (ws.store / "objects" / version["digest"]).exists() == (not version.get("deleted"))
    gone = next(v["version"] for v in coll["versions"] if v.get("deleted"))
    assert "deleted v" in out
    refused = ws.run("registry", "alias", f"{coll['name']}:v{gone}", "kept", check=False)
    assert refused.returncode == 2 and "was deleted" in refused.stderr


def test_a_finished_run_deletes_its_checkpoints_and_says_so_only_when_verbose(workspace):
    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    out = ws.run("train", "--arch", "mlp", "--epochs", "3").stderr
    assert "checkpoint" not in out  # quiet: one line per epoch
    coll = checkpoints_of(ws)
    assert [v for v in coll["versions"] if not v.get("deleted")] == [] and coll["aliases"] == {}
    assert not any((ws.store / "objects" / v["digest"]).exists() for v in coll["versions"])
    listing = ws.run("registry", "list", "--all").stdout
    assert "checkpoint-" not in listing and "store: " in listing
    verbose = ws.run("train", "-v", "--arch", "mlp", "--epochs", "2", "--seed", "5").stderr
    assert "checkpoint: checkpoint-" in verbose and "deleted (2 version(s)): the run finished" in verbose


def test_resume_refuses_training_flags_and_says_when_there_is_nothing(workspace):
    ws = workspace
    nothing = ws.run("train", "--resume", check=False)
    assert nothing.returncode == 2 and "no stopped run to resume" in nothing.stderr
    changed = ws.run("train", "--resume", "abc", "--lr", "0.1", check=False)
    assert changed.returncode == 2 and "drop the training flags" in changed.stderr
    assert not (ws.path / "wandb").exists()  # refused before any run


# a long fault run (make test-slow); make test keeps test_lifecycle's agent killed before the first epoch
@pytest.mark.slow
def test_a_killed_sweep_trial_goes_on_from_its_checkpoint_when_the_sweep_resumes(workspace, tmp_path):
    import os

    from conftest import small_sweep, sweep_state

    ws = workspace
    ws.run("data_prep", "--dataset", "digits")
    config = str(small_sweep(tmp_path, early_terminate=None))
    agent = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "-v", "--tune", "--max-sweep", "1", "--epochs", "4",
                              "--sweep-config", config], cwd=ws.path, env=ws.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in agent.stderr:
        if line.startswith("checkpoint:") and "(epoch 2" in line:
            os.killpg(agent.pid, signal.SIGKILL)  # the agent and its trial: a lost machine
            break
    agent.wait(timeout=120)
    [killed] = sweep_state(ws)["trials"]
    run_id = killed["run_id"]
    assert killed["state"] == "running" and len(killed["history"]) >= 2  # as the killed agent left it

    resumed = ws.run("train", "--tune", "--sweep-id", sweep_state(ws)["id"], "--sweep-config", config)
    assert "--- trial 0 (killed before, re-run from its checkpoint of epoch 2)" in resumed.stderr
    assert "resumed after epoch 2/4" in resumed.stderr and "epoch 1/4 " not in resumed.stderr
    [trial] = sweep_state(ws)["trials"]  # the same trial, its run continued: no new place under the cap
    assert trial["state"] == "finished" and trial["run_id"] == run_id and len(trial["history"]) == 4
    assert "candidate: wandb-registry-model/digits-convnet:v0" in resumed.stdout


def test_a_killed_retrain_resumes_and_links_its_model_as_to_evaluate(trained_copy):
    ws = trained_copy
    ws.run("train", "--epochs", "1", "--width", "8")  # a narrow candidate: its retrain's epochs are short
    ws.run("registry", "link", "digits-convnet:v1", "digits-convnet", "--alias", "candidate")
    retrain = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "-v", "--retrain", "--epochs", "4"],
                               cwd=ws.path, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in retrain.stderr:
        if line.startswith("checkpoint:") and "(epoch 2" in line:
            retrain.send_signal(signal.SIGKILL)
            break
    retrain.wait(timeout=120)
    assert not [v for v in ws.versions("wandb-registry-model/digits-convnet") if "to_evaluate" in v["aliases"]]
    resumed = ws.run("train", "--resume")
    assert "resumed after epoch 2/4" in resumed.stderr
    [linked] = [v for v in ws.versions("wandb-registry-model/digits-convnet") if "to_evaluate" in v["aliases"]]
    model = next(v for v in ws.versions("digits-convnet") if v["digest"] == linked["digest"])
    assert model["metadata"]["retrained_from"] == "wandb-registry-model/digits-convnet:v0"
    assert model["metadata"]["resumed_from"].startswith("checkpoint-")
