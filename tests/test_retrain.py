"""--retrain adds something or says why not (#34): a candidate trained short is trained to the
dataset's full budget (test_lifecycle's flow); one whose training a retrain would only repeat is
linked itself as `to_evaluate`, without training, in a run that records the decision."""
from __future__ import annotations

import time

import torch

from app.recipe.config import DeviceOptions, TrainConfig, retrain_epochs
from app.training.workflow import repeats_candidate
from test_online_contract import online, registry_world, standin  # noqa: F401 (fixtures)

DIGITS = {"split_sizes": {"train": 1257}}


def test_retrain_epochs_are_the_full_budget_and_never_fewer_than_the_candidates():
    assert retrain_epochs(TrainConfig(epochs=2, batch_size=64), DIGITS) == 10  # 20 steps an epoch
    assert retrain_epochs(TrainConfig(epochs=2, batch_size=128), DIGITS) == 20  # its own batch size's
    assert retrain_epochs(TrainConfig(epochs=30, batch_size=64), DIGITS) == 30  # never shorter


def test_only_the_very_same_training_counts_as_a_repeat():
    cpu = torch.device("cpu")
    metadata = {"epochs": 10, "world_size": 1, "trained_on": {"device": "cpu", "precision": "fp32"}}
    assert repeats_candidate(metadata, 10, cpu, DeviceOptions())
    assert not repeats_candidate(metadata, 12, cpu, DeviceOptions())  # longer
    assert not repeats_candidate({**metadata, "world_size": 2}, 10, cpu, DeviceOptions())  # torchrun's global batch
    assert not repeats_candidate({**metadata, "trained_on": {"device": "cuda", "precision": "bf16"}}, 10, cpu,
                                 DeviceOptions())  # another kind of device
    assert not repeats_candidate(metadata, 10, cpu, DeviceOptions(precision="bf16"))
    assert not repeats_candidate({"epochs": 10}, 10, cpu, DeviceOptions())  # a model from before trained_on


def test_a_candidate_at_its_budget_is_linked_as_to_evaluate_without_training(trained_copy):
    ws = trained_copy  # the default baseline: 10 epochs, the full budget on digits
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "candidate")
    started = time.monotonic()
    proc = ws.run("train", "--retrain")
    print(f"--retrain that repeats the candidate: {time.monotonic() - started:.1f} s")
    assert "not retrained: wandb-registry-model/digits-convnet:v0 was trained with this very recipe" in proc.stdout
    assert "(digits-split:v0, 10 epochs on cpu)" in proc.stdout and "--retrain --epochs N (N > 10)" in proc.stdout
    assert "epoch 1/" not in proc.stderr  # nothing trained
    assert [v["version"] for v in ws.versions("digits-convnet")] == ["v0"]  # no new model version
    [linked] = ws.versions("wandb-registry-model/digits-convnet")
    assert {"candidate", "to_evaluate"} <= set(linked["aliases"])
    assert "registry: wandb-registry-model/digits-convnet:v0 [" in proc.stdout
    # the decision is a run of its own, which used the candidate (its lineage)
    assert "retrain" in [run["job_type"] for run in linked["used_by"]]
    # --warm-start always trains (from the candidate's weights: something new)
    warm = ws.run("train", "--retrain", "--warm-start", "--epochs", "1")
    assert "not retrained" not in warm.stdout and "digits-convnet:v1" in warm.stdout


def test_online_a_registry_version_linked_into_its_own_collection_stays_that_version(online, standin):
    """What the repeat case does online: the candidate's registry version, linked again with
    `to_evaluate`, is its source artifact's membership (no new version)."""
    ids = registry_world(standin)  # the registry's v0 is the project's v1, with to_evaluate
    linked = online.link("wandb-registry-model/digits-convnet:to_evaluate", "digits-convnet", ["candidate"])
    [mutation] = [r for r in standin.requests if r["operation"] == "LinkArtifact"]
    assert mutation["variables"]["input"]["artifactID"] == ids["v1"]
    assert linked.ref == "wandb-registry-model/digits-convnet:v0"
    assert standin.aliases_of("my-org-entity", "wandb-registry-model", "digits-convnet")["candidate"] == 0
