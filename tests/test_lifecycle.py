"""The lifecycle does what it says: the original flow without --dataset, candidates whose
weights have their ranking score, retrain's epoch count, the leakage gate, and sweeps that
survive an agent killed at any point."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from app.recipe.config import epochs_for_budget
from conftest import REPO, SCRIPTS, make_workspace, small_sweep, sweep_state

def registry_entry(ws, collection: str, alias: str) -> dict:
    return next(v for v in ws.versions(f"wandb-registry-model/{collection}") if alias in v["aliases"])


def test_the_original_flow_runs_without_dataset_flags(trained, trained_copy, tmp_path):
    # the baseline: `trained` ran `train.py` with no flag after data_prep (this copy holds its store)
    ws = trained_copy
    out, err = (trained.path / "train.stdout").read_text(), (trained.path / "train.stderr").read_text()
    # quiet (#36): a line per epoch and a few around them; W&B's own lines and checkpoints only with -v
    lines = (out + err).splitlines()
    assert len(lines) <= 10 + 5, lines
    assert not [line for line in lines if line.startswith(("wandb:", "checkpoint:", "W&B: no API key"))], lines
    # no --epochs: the step budget's, from the training split's size (1,257 images, 20 steps each)
    assert "digits-convnet:v0" in out and "epoch 10/10 " in err
    baseline = ws.versions("digits-convnet")[0]["metadata"]
    assert baseline["epochs"] == baseline["metrics"]["epochs_trained"] == 10
    assert baseline["arch"] == "convnet" and baseline["hyperparameters"]["schedule"] == "cosine"

    # --tune: the candidate's weights have the score it was ranked by
    ws.run("train", "--tune", "--max_sweep", "3", "--sweep-config", str(small_sweep(tmp_path, early_terminate=None)))
    state = sweep_state(ws)
    assert all(t["params"]["dataset"] == "digits" for t in state["trials"])
    candidate = registry_entry(ws, "digits-convnet", "candidate")
    ranked = next(t for t in state["trials"] if t["model_ref"] == candidate["source"])
    ws.run("evaluate", "--model", "wandb-registry-model/digits-convnet:candidate", "--no-generate-images")
    evaluation = ws.versions("digits-convnet-evaluation")[-1]["metadata"]
    assert evaluation["metrics"]["val_accuracy"] == pytest.approx(ranked["summary"]["val/best_accuracy"], abs=1e-6)
    candidate_meta = candidate["metadata"]
    assert candidate_meta["metrics"]["best_epoch"] <= candidate_meta["metrics"]["epochs_trained"]
    assert candidate_meta["metrics"]["val_accuracy"] == ranked["summary"]["val/best_accuracy"]

    # --retrain with no --epochs trains the trial (1 or 2 epochs) to the dataset's full budget (#34)
    ws.run("train", "--retrain")
    retrained = registry_entry(ws, "digits-convnet", "to_evaluate")["metadata"]
    budget = epochs_for_budget(1257, candidate_meta["hyperparameters"]["batch_size"])
    assert candidate_meta["epochs"] == ranked["params"]["epochs"] < budget
    assert retrained["epochs"] == retrained["metrics"]["epochs_trained"] == budget
    assert retrained["hyperparameters"] == candidate_meta["hyperparameters"]  # the recipe stays locked
    recipe_file = ws.store / "objects" / registry_entry(ws, "digits-convnet", "to_evaluate")["digest"] / "recipe.json"
    assert json.loads(recipe_file.read_text())["epochs"] == budget

    out = ws.run("evaluate", "--promote", "--no-generate-images").stdout
    assert "promoted to wandb-registry-model/digits-convnet:" in out
    production = registry_entry(ws, "digits-convnet", "production")
    assert "to_evaluate" not in production["aliases"]  # consumed by its promotion (#36)

    split_dir = ws.store / "objects" / ws.versions("digits-split")[0]["digest"]
    image = np.load(split_dir / "test_images.npy")[0]
    Image.fromarray(image).save(tmp_path / "digit.png")
    assert ws.run("predict", str(tmp_path / "digit.png")).returncode == 0

    # the leakage gate: scored on another dataset version, --promote refuses and production stays
    ws.run("data_prep", "--dataset", "digits", "--seed", "7")
    refused = ws.run("evaluate", "--model", "wandb-registry-model/digits-convnet:candidate", "--data", "digits-split:v1",
                     "--promote", "--no-generate-images", check=False)
    out = refused.stdout
    assert refused.returncode == 3 and "promotion: refused" in out and "dataset version other than" in out
    assert registry_entry(ws, "digits-convnet", "production")["version"] == production["version"]

    # with two dataset artifacts, train takes the newest and says which
    proc = ws.run("train", "--epochs", "1", "--arch", "mlp")
    assert "digits-split:v1" in proc.stderr and "digits-mlp:v0" in proc.stdout
    # every run finished (baseline, the sweep's trials, the retrain): no checkpoint is left (#36)
    assert [v["ref"] for v in ws.run_json("registry", "list", "--all") if v["type"] == "checkpoint"] == []


def test_several_collections_with_the_alias_ask_for_dataset(trained_copy):
    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "to_evaluate")
    ws.run("train", "--epochs", "1", "--arch", "mlp")
    ws.run("registry", "link", "digits-mlp:v0", "digits-mlp", "--alias", "to_evaluate")
    proc = ws.run("evaluate", check=False)
    assert proc.returncode == 2 and "digits-convnet, digits-mlp" in proc.stderr and "--dataset" in proc.stderr
    assert "digits-mlp:v0" in ws.run("evaluate", "--arch", "mlp", "--no-generate-images").stdout


def _agent(ws, *args):
    """An agent in its own process group, so that killing the group takes its trial along,
    as Ctrl-C in a terminal or a lost machine would."""
    return subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "--tune", *args],
                            cwd=ws.path, env=ws.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("point, marker, delay", [
    ("before the first epoch", "--- trial 1 (", 0.0),  # its line: "--- trial 1 (2 of 3; ...): {params}"
    pytest.param("mid-epoch", "epoch 1/", 0.05, marks=pytest.mark.slow),
    pytest.param("while logging the model", "epoch 2/2", 0.0, marks=pytest.mark.slow),
])
def test_an_agent_killed_during_a_trial_leaves_it_crashed_and_the_sweep_resumes(trained_copy, tmp_path, point,
                                                                                   marker, delay):
    ws = trained_copy
    path = small_sweep(tmp_path, cap=3, early_terminate=None)
    config = yaml.safe_load(path.read_text())
    config["parameters"].update(epochs={"value": 2}, batch_size={"value": 32})  # a longer epoch: room to land inside it
    if point != "before the first epoch":  # a narrow trial's epoch was over before the kill landed
        config["parameters"]["width"] = {"value": 32}
    path.write_text(yaml.safe_dump(config))
    agent = _agent(ws, "--sweep-config", str(path), "--no-link")
    seen = []
    for line in agent.stderr:
        seen.append(line)
        if line.startswith(marker):
            break
    else:
        pytest.fail(f"the agent ended before {marker!r}:\n{''.join(seen)}")
    time.sleep(delay)
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(30)
    killed = max(t["number"] for t in sweep_state(ws)["trials"])

    sweep_id = sweep_state(ws)["id"]
    resumed = _agent(ws, "--sweep-config", str(path), "--sweep-id", sweep_id, "--no-link")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    trials = sweep_state(ws)["trials"]
    assert len(trials) == 3  # run_cap: the crashed trial counts, as on W&B's server
    assert "running" not in [t["state"] for t in trials]
    victim = trials[killed]
    if victim.get("resumed_at"):
        # the kill came after the trial's checkpoint of epoch 1 was logged (on a fast machine, within
        # the 0.05 s after the epoch's line): the resumed sweep went on from it, in the same run
        assert point != "before the first epoch" and victim["resume_run"] == victim["run_id"], victim
        assert victim["state"] == "finished" and len(victim["history"]) == 2 and victim["model_ref"], victim
    elif point == "while logging the model" and victim["state"] == "finished":
        assert victim["model_ref"]  # the kill came after the trial had finished: a whole model, listed
    else:
        assert victim["state"] == "crashed", victim
    assert [t["state"] for t in trials[killed + 1:]] == ["finished"] * (2 - killed)
    # every finished trial's model is listed whole (a kill between logging the model and the
    # trial's report may list one more, for the crashed trial, as W&B would keep it too)
    listed = {f"digits-convnet:{v['version']}" for v in ws.versions("digits-convnet")}
    assert all(t["model_ref"] in listed for t in trials if t["state"] == "finished")


def demo_steps() -> list[list[str]]:
    """The steps of `make demo`, read from the Makefile itself: [script, *args] per line."""
    import re
    import shlex

    steps = []
    for line in (REPO / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0].splitlines():
        match = re.match(r"\tcd demo && \.\./\$\(PY\) \.\./app/pipelines/(\w+)\.py(.*)", line)
        if match:
            args = [a.replace("../", str(REPO) + "/") for a in shlex.split(match.group(2))]
            steps.append([match.group(1), *args])
    return steps


@pytest.mark.slow  # two whole demos: about 2.5 minutes
def test_make_demo_twice_gives_the_same_production_model_at_98_percent(tmp_path):
    steps = demo_steps()
    assert [s[0] for s in steps] == ["data_prep", "train", "train", "train", "evaluate", "registry"]
    results = []
    for attempt in ("first", "second"):
        ws = make_workspace(tmp_path / attempt)
        printed = 0
        for script, *args in steps:
            proc = ws.run(script, *args)
            printed += len((proc.stdout + proc.stderr).splitlines())
        assert printed <= 80, printed  # quiet by default (#36): the whole demo in at most 80 lines
        assert not [v for v in ws.run_json("registry", "list", "--all") if v["type"] == "checkpoint"]
        production = registry_entry(ws, "digits-convnet", "production")
        evaluation = ws.versions("digits-convnet-evaluation")[-1]["metadata"]["metrics"]
        results.append((production["digest"], evaluation["test_accuracy"]))
    assert results[0] == results[1]
    assert results[0][1] >= 0.98
