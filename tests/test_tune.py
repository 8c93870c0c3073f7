"""--tune offline: the local controller with W&B's sweeps engine, and sweep.yaml checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from app.errors import UserError
from app.pipelines.train import parse_args
from app.tuning.sweep_config import expand_command, load_sweep_config, validate, with_fixed
from conftest import REPO, SCRIPTS, leet_records, runs_of, small_sweep, sweep_state

SWEEP = REPO / "sweep.yaml"


def test_repo_sweep_yaml_is_valid_and_its_command_parses_in_train():
    config = load_sweep_config(SWEEP)
    validate(config)
    assert "--tune" not in config["command"] and config["method"] == "bayes"
    params = {"lr": 0.001, "batch_size": 64, "dropout_1": 0.1, "dropout_2": 0.2, "dropout_3": 0.3, "dense": 128,
              "epochs": 2, "dataset": "digits", "arch": "cnn"}
    argv = expand_command(with_fixed(config, {}), params)
    assert argv[1] == "app/pipelines/train.py" and "--lr=0.001" in argv
    args = parse_args(argv[2:])
    assert (args.lr, args.batch_size, args.dense, args.epochs, args.dataset) == (0.001, 64, 128, 2, "digits")
    assert not args.tune
    # true/false as train.py spells them (W&B's ${args_no_boolean_flags}): --compile, or nothing
    on, off = (parse_args(expand_command(config, {**params, "compile": v})[2:]) for v in (True, False))
    assert (on.compile, off.compile) == (True, False) and "--compile" in expand_command(config, {"compile": True})


def test_a_sweep_passing_booleans_as_values_is_refused_with_the_fix():
    config = load_sweep_config(SWEEP)
    config["command"] = ["${env}", "${interpreter}", "${program}", "${args}"]
    config["parameters"]["compile"] = {"values": [True, False]}
    with pytest.raises(UserError, match=r"compile take true/false.*\$\{args_no_boolean_flags\}"):
        validate(config)
    del config["command"]  # W&B's default command is ${args} too
    with pytest.raises(UserError, match="args_no_boolean_flags"):
        validate(config)


def test_device_flags_given_to_tune_reach_every_trial_and_defaults_stay_each_machines():
    from app.tuning.run import fixed_values

    config = load_sweep_config(SWEEP)
    tune_args = parse_args(["--tune", "--dataset", "digits", "--device", "cpu", "--compile", "--precision", "fp32"])
    tune_args.arch, tune_args.epochs = "cnn", 3
    swept = with_fixed(config, fixed_values(tune_args, config))
    validate(swept)
    trial = parse_args(expand_command(swept, {k: v["value"] for k, v in swept["parameters"].items() if "value" in v})[2:])
    assert (trial.device, trial.compile, trial.precision, trial.dataset) == ("cpu", True, "fp32", "digits")
    plain = parse_args(["--tune", "--dataset", "digits"])
    plain.arch, plain.epochs = "cnn", 3
    assert not {"device", "precision", "compile"} & set(with_fixed(config, fixed_values(plain, config))["parameters"])


@pytest.mark.parametrize("change, message", [
    (lambda c: c["parameters"].update(momentum={"values": [0.9]}), "'momentum' is not a train.py flag"),
    (lambda c: c["metric"].update(name="val_loss"), "metric.name 'val_loss'"),
    (lambda c: c["parameters"].update(lr={"distribution": "gaussian_bogus", "min": 0, "max": 1}), "lr"),
    (lambda c: c.update(method="genetic"), "genetic"),
    (lambda c: c.update(methd="bayes"), "'methd' was unexpected"),
    (lambda c: c["command"].append("--tune"), "--tune"),
])
def test_invalid_sweep_yaml_is_refused_naming_the_key(change, message):
    config = load_sweep_config(SWEEP)
    change(config)
    with pytest.raises(UserError, match=message):
        validate(config)


def test_cnn_parameters_are_refused_for_the_mlp():
    cnn_sweep = load_sweep_config(SWEEP.parent / "sweep-cnn.yaml")
    with pytest.raises(UserError, match="'dropout_1' does not apply to --arch mlp"):
        validate(cnn_sweep, arch="mlp")
    validate(cnn_sweep, arch="cnn")
    with pytest.raises(UserError, match="'width' does not apply to --arch cnn"):
        validate(load_sweep_config(SWEEP), arch="cnn")


def test_invalid_sweep_yaml_stops_tune_before_anything_runs(workspace, tmp_path):
    bad = small_sweep(tmp_path, metric={"name": "val_loss", "goal": "minimize"})
    # refused before the agent starts anything: in this process (a --tune run gets its own otherwise)
    proc = workspace.run("train", "--dataset", "digits", "--tune", "--sweep-config", str(bad), check=False,
                         process=False)
    assert proc.returncode == 2 and "val_loss" in proc.stderr
    assert workspace.store_snapshot() == {}


def test_an_augmented_split_trains_the_larger_budget_and_a_sweep_ranks_its_trials_on_the_plain_one(
        workspace, tmp_path, monkeypatch):
    """#34: a colour folder (crop-flip) trains the augmented budget at the convnet's colour defaults
    with no flag; --tune's trials on it train the plain budget, as do a `wandb agent`'s of a sweep
    file without epochs, and --retrain takes a trial to the full one."""
    from dataclasses import replace
    from types import SimpleNamespace

    from app import names
    from app.recipe.config import MAX_EPOCHS, epochs_for_budget, from_flags, retrain_epochs, unset_flags, \
        with_dataset_defaults
    from app.tracking import backend
    from app.tuning.run import sweep_epochs

    rng = np.random.default_rng(0)
    for name in ("warm", "cold"):
        (tmp_path / "colours" / name).mkdir(parents=True)
        for i in range(450):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "colours" / name / f"{i}.png")
    workspace.run("data_prep", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "colours"))
    workspace.enter(monkeypatch)
    metadata = backend().peek(names.dataset_artifact("colours"), names.DATASET_TYPE).metadata
    train_size = metadata["split_sizes"]["train"]
    assert metadata["augment"] == "crop-flip" and train_size == 630  # 10 steps an epoch at batch 64

    alone = with_dataset_defaults(from_flags("convnet", None, {}), metadata, unset=unset_flags({}))  # as train.py
    trials = sweep_epochs(SimpleNamespace(data=None, dataset="colours", arch="convnet"))
    assert alone.batch_size == 32  # the convnet's colour default: 20 steps an epoch
    assert (trials, alone.epochs) == (epochs_for_budget(train_size, 64), 80) == (20, 80)
    trial = replace(alone, batch_size=64, epochs=trials)  # a trial at the plain budget's batch size
    assert retrain_epochs(trial, metadata) == 100 == MAX_EPOCHS  # 1,600 steps of 10, at most MAX_EPOCHS

    # train.py itself: what no flag gave takes the colour default, a flag stays, the recipe records both
    workspace.run("train", "--epochs", "1", "--lr", "0.002", "--width", "8")
    [model] = workspace.versions("colours-convnet")
    recorded = model["metadata"]["hyperparameters"]
    assert (recorded["lr"], recorded["batch_size"], recorded["weight_decay"], recorded["label_smoothing"],
            recorded["width"]) == (0.002, 32, 0.0027, 0.1, 8)

    # a `wandb agent` trial of a sweep file without epochs (WANDB_SWEEP_ID set, no --epochs) trains
    # the count --tune gives every trial, not the budget of its own batch size (100 epochs at 128)
    agent_trial = {**workspace.env, "WANDB_SWEEP_ID": "a-sweep-without-epochs"}
    assert epochs_for_budget(train_size, 128, augment="crop-flip") == 100
    workspace.run("train", "--batch_size", "128", "--width", "8", env=agent_trial)
    trial_model = workspace.versions("colours-convnet")[-1]["metadata"]
    assert trial_model["epochs"] == trial_model["metrics"]["epochs_trained"] == trials == 20
    assert trial_model["hyperparameters"]["batch_size"] == 128


def test_offline_sweep_runs_trials_and_links_the_best_as_candidate(workspace, tmp_path):
    workspace.run("data_prep", "--dataset", "digits")
    out = workspace.run("train", "--dataset", "digits", "--tune", "--max_sweep", "4",
                        "--sweep-config", str(small_sweep(tmp_path))).stdout
    state = sweep_state(workspace)
    trials = state["trials"]
    assert len(trials) == 4
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 4
    assert all(t["state"] in ("finished", "stopped") for t in trials)
    metric = state["config"]["metric"]["name"]
    assert all(len(t["history"]) >= 1 and metric in t["summary"] for t in trials)
    finished = [t for t in trials if t["state"] == "finished"]
    models = {v["version"]: v for v in workspace.versions("digits-convnet")}
    assert len(models) == len(finished)
    for v in models.values():
        assert v["metadata"]["sweep"]["sweep_id"] == state["id"]
    best = max(finished, key=lambda t: t["summary"][metric])
    candidate = next(v for v in workspace.versions("wandb-registry-model/digits-convnet") if "candidate" in v["aliases"])
    assert candidate["source"] == best["model_ref"]
    assert "ranking by val/best_accuracy" in out

    # the metric name is a key of the trial runs' own W&B summaries
    trial_dirs = runs_of(workspace, "sweep_trial")
    assert len(trial_dirs) == 4
    for d in trial_dirs:
        records = leet_records(d)
        summary = {}
        for r in records:
            if r["type"] == "summary":
                summary.update(r["summary"]["update"])
        assert isinstance(summary[metric], float)
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["run_group"] == f"sweep-{state['id']}"


def test_two_agents_share_one_sweep_up_to_its_cap(workspace, tmp_path):
    workspace.run("data_prep", "--dataset", "digits")
    config = small_sweep(tmp_path, cap=4, early_terminate=None)
    first = workspace.run("train", "--dataset", "digits", "--tune", "--count", "1", "--no-link",
                          "--sweep-config", str(config))
    sweep_id = sweep_state(workspace)["id"]
    agents = [subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), "--dataset", "digits", "--tune",
                                "--count", "10", "--sweep-id", sweep_id, "--no-link", "--sweep-config", str(config)],
                               cwd=workspace.path, env=workspace.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(2)]
    assert [a.wait(timeout=600) for a in agents] == [0, 0]
    trials = sweep_state(workspace)["trials"]
    assert len(trials) == 4 and [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["state"] == "finished" for t in trials)
    assert "best:" in first.stdout


def _exited_process() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_trial_whose_processes_are_gone_is_crashed_and_counts_toward_the_cap(tmp_path):
    """Unit: the controller's liveness rules (the end-to-end kills are in test_lifecycle.py)."""
    from app.processes import process_identity
    from app.tracking.store import Store
    from app.tracking.sweep_controller import LocalSweeps

    config = load_sweep_config(SWEEP)
    config["run_cap"] = 3
    controller = LocalSweeps(Store(tmp_path / "store"))
    sweep_id = controller.create(config)
    claimed = [controller.next_trial(sweep_id, cap=None) for _ in range(3)]
    dead = process_identity(_exited_process())
    state = controller.read(sweep_id)
    # 0: agent died before recording the trial's process (pid unknown: the old -1 probe said alive)
    state["trials"][0]["agent"] = dead
    # 1: the trial's own process died; 2: its pid now belongs to another process (start time differs)
    state["trials"][1]["process"] = dead
    state["trials"][2]["process"] = {"pid": os.getpid(), "started": "0"}
    controller._write(state)
    assert controller.next_trial(sweep_id, cap=None) is None  # all three count toward run_cap
    assert [t["state"] for t in controller.read(sweep_id)["trials"]] == ["crashed"] * 3
    assert [t["number"] for t in claimed] == [0, 1, 2]
    # a trial that reports is alive whatever was concluded, and records its own process
    controller.report_epoch(sweep_id, 0, {"epoch": 1, "val/accuracy": 0.5, "val/best_accuracy": 0.5})
    trial = controller.read(sweep_id)["trials"][0]
    assert trial["state"] == "running" and trial["process"]["pid"] == os.getpid()


def test_the_local_search_is_seeded_so_the_same_sweep_suggests_the_same_trials(tmp_path):
    """Two independent sweeps of one definition, given the same results, suggest the same trials
    (the Bayesian engine draws from global generators; the controller seeds them per suggestion)."""
    import random

    import numpy as np

    from app.tracking.store import Store
    from app.tracking.sweep_controller import LocalSweeps

    config = load_sweep_config(SWEEP)
    config.pop("early_terminate")

    def suggestions(root, noise):
        controller = LocalSweeps(Store(root))
        sweep_id = controller.create(config)
        params = []
        for _ in range(4):
            random.seed(noise + len(params))  # whatever the generators held before must not matter
            np.random.seed(noise + len(params))
            trial = controller.next_trial(sweep_id, cap=None)
            params.append(trial["params"])
            score = 1.0 - abs(np.log10(trial["params"]["lr"]) + 3) / 10  # a deterministic "result"
            controller.report_epoch(sweep_id, trial["number"], {"epoch": 1, "val/best_accuracy": score})
            controller.finish(sweep_id, trial["number"], None)
        return params

    first, second = suggestions(tmp_path / "a", noise=1000), suggestions(tmp_path / "b", noise=2000)
    assert first == second and len({json.dumps(p, sort_keys=True) for p in first}) == 4


def test_a_stopped_trial_is_handed_to_the_search_as_w_and_bs_server_hands_it():
    """Online, `wandb agent` stops a trial with SIGTERM and train.py exits non-zero: W&B records
    the run Failed, and the Bayesian engine scores it by the file's `metric.impute` (default: the
    worst value any trial logged), not as a finished trial. Offline does the same, with the
    trial's history there for `impute: best` or `latest`."""
    from app.tracking.sweep_controller import LocalSweeps, search_seed

    history = [{"epoch": 1, "val/best_accuracy": 0.3}, {"epoch": 2, "val/best_accuracy": 0.9}]
    trial = {"name": "trial-1", "params": {"lr": 0.001}, "history": history, "summary": history[-1]}
    stopped = LocalSweeps._as_sweep_run({**trial, "state": "stopped"})
    assert stopped.state == "failed"
    assert LocalSweeps._as_sweep_run({**trial, "state": "finished"}).state == "finished"
    assert stopped.metric_extremum("val/best_accuracy", kind="maximum") == 0.9
    # the choice of impute keeps the search's seed, so bench_sweep compares choices on the same draws
    config = load_sweep_config(SWEEP)
    assert search_seed(config) == search_seed({**config, "metric": {**config["metric"], "impute": "best"}})
    assert search_seed(config) != search_seed({**config, "metric": {**config["metric"], "goal": "minimize"}})
