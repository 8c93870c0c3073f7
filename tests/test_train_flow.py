"""train.py end to end: baseline, registry link, --retrain, and its refusals."""
from __future__ import annotations

import json

from conftest import leet_records, runs_of


def test_baseline_logs_a_model_with_its_recipe_and_lineage(trained):
    [model] = trained.versions("digits-convnet")
    [dataset] = trained.versions("digits-split")
    meta = model["metadata"]
    assert meta["dataset"] == {"ref": "digits-split:v0", "digest": dataset["digest"], "name": "digits"}
    assert meta["arch"] == "convnet" and (meta["input"]["channels"], meta["input"]["size"]) == (1, [28, 28]) and len(meta["class_names"]) == 10
    assert set(meta["hyperparameters"]) >= {"lr", "batch_size", "seed", "width", "schedule"}
    assert meta["parameters"] == 297_450 and "BatchNorm2d" in meta["summary"]
    assert meta["metrics"]["epochs_trained"] == meta["epochs"] == 10  # the step budget's on digits' 1,257
    assert meta["metrics"]["val_accuracy"] >= 0.95  # the default hyperparameters learn digits
    train_run = model["logged_by"]["id"]
    assert train_run in [u["id"] for u in dataset["used_by"]]


def test_training_run_record_holds_config_metrics_and_model(trained):
    [train_dir] = runs_of(trained, "train")
    records = leet_records(train_dir)
    config = next(r["run"]["config"]["update"] for r in records if r["type"] == "run")
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    epochs = [h for h in history if "val/accuracy" in h]
    assert [h["epoch"] for h in epochs] == list(range(1, 11))
    assert all("train/loss" in h and "val/best_accuracy" in h for h in epochs)
    config_text = json.dumps(config)
    assert "digits-split" in config_text
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert any(a.get("name") == "digits-convnet" and a["type"] == "model" for a in artifacts)


def test_link_candidate_then_retrain_to_evaluate(workspace):
    workspace.run("data_prep", "--dataset", "digits")
    workspace.run("train", "--dataset", "digits", "--epochs", "1", "--lr", "0.002", "--width", "8")
    workspace.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "candidate")
    proc = workspace.run("train", "--dataset", "digits", "--retrain", "--epochs", "2")
    assert "to_evaluate" in proc.stdout
    models = workspace.versions("digits-convnet")
    assert len(models) == 2
    retrained = models[1]["metadata"]
    assert retrained["retrained_from"] == "wandb-registry-model/digits-convnet:v0"
    assert retrained["hyperparameters"]["lr"] == 0.002 and retrained["hyperparameters"]["width"] == 8
    assert retrained["dataset"] == models[0]["metadata"]["dataset"]
    assert retrained["epochs"] == 2
    registry = workspace.versions("wandb-registry-model/digits-convnet")
    to_evaluate = next(v for v in registry if "to_evaluate" in v["aliases"])
    assert to_evaluate["source"] == "digits-convnet:v1"
    assert "candidate" in registry[0]["aliases"]

    # a locked hyperparameter is refused, names itself, and changes nothing
    before = workspace.store_snapshot()
    proc = workspace.run("train", "--dataset", "digits", "--retrain", "--lr", "0.5", check=False)
    assert proc.returncode == 2 and "lr" in proc.stderr and "locked" in proc.stderr
    assert workspace.store_snapshot() == before


def test_retrain_without_a_candidate_lists_what_exists(workspace):
    workspace.run("data_prep", "--dataset", "digits")
    proc = workspace.run("train", "--dataset", "digits", "--retrain", check=False)
    assert proc.returncode == 2
    assert "no registry collection has a version with the alias 'candidate'" in proc.stderr
    assert "train.py --tune" in proc.stderr and "registry.py link" in proc.stderr
    proc = workspace.run("train", "--dataset", "digits", "--arch", "cnn", "--retrain", check=False)
    assert proc.returncode == 2
    assert "no collection wandb-registry-model/digits-cnn in the model registry" in proc.stderr \
        and "registry.py link" in proc.stderr


def test_missing_or_wrong_type_input_lists_what_exists(workspace):
    proc = workspace.run("train", "--dataset", "digits", check=False)
    assert proc.returncode == 2 and "data_prep.py" in proc.stderr
    workspace.run("data_prep", "--dataset", "digits")
    proc = workspace.run("train", "--dataset", "digits", "--data", "digits-split:v5", check=False)
    assert proc.returncode == 2 and "latest -> v0" in proc.stderr


def test_same_seed_and_data_give_identical_weights_so_the_same_version(workspace):
    workspace.run("data_prep", "--dataset", "digits")
    first = workspace.run("train", "--dataset", "digits", "--epochs", "1", "--arch", "mlp").stdout
    second = workspace.run("train", "--dataset", "digits", "--epochs", "1", "--arch", "mlp").stdout
    assert "digits-mlp:v0" in first and "digits-mlp:v0" in second  # same bytes, same W&B digest
    third = workspace.run("train", "--dataset", "digits", "--epochs", "1", "--arch", "mlp", "--seed", "1").stdout
    assert "digits-mlp:v1" in third
    assert len(workspace.versions("digits-mlp")) == 2
