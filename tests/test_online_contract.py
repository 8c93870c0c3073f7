"""The online backend through the real wandb SDK, against a stand-in for W&B's GraphQL service.

Everything between our code and the HTTP request runs for real: wandb's public Api and
Artifact, and the wandb-core service that sends the requests. The stand-in
(tests/wandb_standin.py) answers the operations these calls make and records them, so the
assertions are on what the SDK sent to W&B.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from app.errors import UserError
from app.tracking.settings import Settings
import in_process
from conftest import REPO, SCRIPTS, make_workspace
from wandb_standin import StandIn

KEY = "k" * 40


@pytest.fixture
def standin():
    server = StandIn().start()
    yield server
    server.stop()


@pytest.fixture
def online(standin, tmp_path, monkeypatch):
    """An OnlineBackend of this process, pointed at the stand-in."""
    for name, value in {"WANDB_BASE_URL": standin.url, "WANDB_API_KEY": KEY, "WANDB_CONFIG_DIR": str(tmp_path / "cfg"),
                        "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_DATA_DIR": str(tmp_path / "data"),
                        "WANDB_MODE": "online", "NETRC": str(tmp_path / "no-netrc")}.items():
        monkeypatch.setenv(name, value)
    import wandb

    wandb.teardown()  # a fresh SDK singleton, with these settings
    from app.tracking.backends import OnlineBackend

    backend = OnlineBackend(Settings(mode="online", project="proj", entity="me", model_retrain=None, model_eval=None,
                                     store_dir=tmp_path / "unused", base_url=standin.url))
    yield backend
    wandb.teardown()


def registry_world(standin) -> dict:
    """Project versions digits-convnet v0 and v1; the registry's v0 links the project's v1, with
    `to_evaluate`: the registry's and the project's version numbers differ on purpose."""
    ids = {"v0": standin.add_artifact("digits-convnet", "model", "digest-0", {"metrics": {"test_accuracy": 0.5}}),
           "v1": standin.add_artifact("digits-convnet", "model", "digest-1", {"metrics": {"test_accuracy": 0.9}})}
    standin.link(ids["v1"], "digits-convnet", ["to_evaluate"])
    return ids


def test_a_registry_version_keeps_its_registry_identity_and_its_source(online, standin):
    registry_world(standin)
    info = online.peek("wandb-registry-model/digits-convnet:to_evaluate", "model")
    assert info.ref == "wandb-registry-model/digits-convnet:v0"  # never the project's digits-convnet:v0
    assert info.source == "me/proj/digits-convnet:v1" and info.digest == "digest-1"
    assert info.collection == "wandb-registry-model/digits-convnet" and "to_evaluate" in info.aliases
    project_version = online.peek("digits-convnet:v0")
    assert (project_version.ref, project_version.digest, project_version.source) == ("digits-convnet:v0", "digest-0", None)


def test_promotion_moves_production_onto_the_evaluated_version(online, standin):
    """Must show: the version evaluated through `...:to_evaluate` is the one that gets `production`."""
    from app.evaluation.promotion import promote

    ids = registry_world(standin)
    evaluated = online.peek("wandb-registry-model/digits-convnet:to_evaluate", "model")
    run = SimpleNamespace(backend=online)
    promoted = promote(run, evaluated, "digits-convnet", production=None)
    assert promoted == "wandb-registry-model/digits-convnet:v0"
    [mutation] = [r for r in standin.requests if r["operation"] == "AddAliases"]
    spec = mutation["variables"]["input"]
    assert spec["artifactID"] == ids["v1"]  # the evaluated artifact, not the project's v0 (ids["v0"])
    assert spec["aliases"] == [{"alias": "production", "artifactCollectionName": "digits-convnet",
                                "entityName": "my-org-entity", "projectName": "wandb-registry-model"}]
    assert standin.aliases_of("my-org-entity", "wandb-registry-model", "digits-convnet")["production"] == 0
    assert "production" not in standin.aliases_of("me", "proj", "digits-convnet")


def test_linking_names_the_artifact_of_the_ref(online, standin):
    ids = registry_world(standin)
    linked = online.link("digits-convnet:v0", "digits-convnet", ["candidate"])
    [mutation] = [r for r in standin.requests if r["operation"] == "LinkArtifact"]
    assert mutation["variables"]["input"]["artifactID"] == ids["v0"]
    assert mutation["variables"]["input"]["artifactPortfolioName"] == "digits-convnet"
    assert linked.ref == "wandb-registry-model/digits-convnet:v1" and linked.source == "me/proj/digits-convnet:v0"


def test_a_guard_refuses_to_move_production_that_moved_meanwhile(online, standin):
    from app.evaluation.promotion import promote

    ids = registry_world(standin)
    evaluated = online.peek("wandb-registry-model/digits-convnet:to_evaluate", "model")
    standin.link(ids["v0"], "digits-convnet", ["production"])  # someone else promoted meanwhile
    with pytest.raises(UserError, match="'production' of .* moved to v1 while this step ran"):
        promote(SimpleNamespace(backend=online), evaluated, "digits-convnet", production=None)
    assert "AddAliases" not in standin.operations()


def test_the_card_is_saved_as_the_registry_versions_description_through_the_sdk(online, standin):
    """evaluate.py's card: Artifact.description saved on the artifact the registry version links to,
    read back through the registry ref; a description the SDK skipped (a read-only source project)
    is an error, not lost in a warning."""
    ids = registry_world(standin)
    card = "# digits-convnet: model card\n\n## Evaluation\n\nEvaluated by run `r1` on `digits-split:v0`.\n"
    online.describe("wandb-registry-model/digits-convnet:to_evaluate", card)
    [update] = [r for r in standin.requests if r["operation"] == "UpdateArtifact"]
    assert update["variables"]["input"]["artifactID"] == ids["v1"] and update["variables"]["input"]["description"] == card
    assert online.peek("wandb-registry-model/digits-convnet:to_evaluate").description == card
    assert online.peek("digits-convnet:v1").description == card and online.peek("digits-convnet:v0").description is None

    standin.handlers["IsProjectReadOnly"] = lambda variables: {"project": {"readOnly": True}}
    with pytest.raises(UserError, match="did not save the description .* may not write to the project"):
        online.describe("wandb-registry-model/digits-convnet:to_evaluate", card + "\nagain")
    assert online.peek("digits-convnet:v1").description == card


def test_not_found_is_told_apart_from_every_other_failure(online, standin):
    registry_world(standin)
    with pytest.raises(UserError, match="was not found in W&B"):
        online.peek("wandb-registry-model/digits-convnet:production")
    assert online.lookup("wandb-registry-model/digits-convnet:production") is None

    # a server failure is not "no production model": the gate's lookup raises instead of None
    standin.failures["ArtifactMembershipByName"] = "permission denied"
    with pytest.raises(UserError, match="not a 'not found'"):
        online.lookup("wandb-registry-model/digits-convnet:production")
    with pytest.raises(UserError, match="not a 'not found'"):
        online.peek("wandb-registry-model/digits-convnet:to_evaluate")


def test_registry_refs_keep_their_organization(online, standin):
    standin.orgs["other-org"] = "other-org-entity"
    art = standin.add_artifact("digits-convnet", "model", "digest-x")
    standin.link(art, "digits-convnet", ["production"], org_entity="other-org-entity")
    info = online.peek("other-org/wandb-registry-model/digits-convnet:production")
    assert info.ref == "other-org/wandb-registry-model/digits-convnet:v0" and info.digest == "digest-x"
    [fetch] = [r for r in standin.requests if r["operation"] == "ArtifactMembershipByName"]
    assert fetch["variables"]["entity"] == "other-org-entity"
    # an organization the user is not in is an error of its own, not a "not found"
    with pytest.raises(UserError, match="not a 'not found'"):
        online.peek("no-such-org/wandb-registry-model/digits-convnet:production")


def test_the_sdks_own_netrc_reader_is_still_there():
    """credentials.netrc_api_key probes an internal of the SDK; this fails when it moves."""
    from app.tracking.credentials import internal_netrc_reader

    assert internal_netrc_reader() is not None


# -- the scripts, as a user runs them ------------------------------------------------------------


def script_env(standin, tmp_path, **extra) -> dict:
    ws = make_workspace(tmp_path / "ws")
    env = {**ws.env, "WANDB_BASE_URL": standin.url, "WANDB_API_KEY": KEY, "WANDB_MODE": "online", **extra}
    return {k: v for k, v in env.items() if v is not None}


def run_script(env, cwd, script, *args):
    """The script run as a user runs it, in this process (tests/in_process.py), and its seconds."""
    started = time.monotonic()
    proc = in_process.call(Path(script), args, cwd=cwd, env=env)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("argv", [
    ["data_prep.py", "--dataset", "digits"],
    ["train.py", "--dataset", "digits"],
    ["train.py", "--retrain"],
    ["train.py", "--tune", "--dataset", "digits"],
    ["evaluate.py"],
    ["predict.py", "x.png"],
    ["registry.py", "list"],
])
def test_a_bad_key_ends_every_script_at_once_with_the_fix(standin, tmp_path, argv):
    standin.api_key_ok = False
    env = script_env(standin, tmp_path)
    proc, seconds = run_script(env, tmp_path, str(SCRIPTS / argv[0]), *argv[1:])
    assert proc.returncode == 2, proc.stderr
    assert "refused the API key" in proc.stderr and "wandb login" in proc.stderr and "WANDB_MODE=offline" in proc.stderr
    assert "Traceback" not in proc.stderr and "no artifacts" not in proc.stdout
    assert seconds < 60  # a guard against hanging; the figures are in the issue note


@pytest.mark.parametrize("argv", [["registry.py", "list"], ["train.py", "--retrain"], ["evaluate.py"]])
def test_no_network_ends_every_lookup_at_once_with_the_fix(tmp_path, argv):
    ws = make_workspace(tmp_path / "ws")
    env = {**ws.env, "WANDB_MODE": "online", "WANDB_API_KEY": KEY}
    proc, seconds = run_script(env, tmp_path, str(SCRIPTS / argv[0]), *argv[1:])
    assert proc.returncode == 2 and "cannot reach W&B" in proc.stderr and "WANDB_MODE=offline" in proc.stderr
    assert "Traceback" not in proc.stderr and "no artifacts" not in proc.stdout
    assert seconds < 60


def test_wandb_login_with_a_host_is_enough_to_run_online(standin, tmp_path):
    """No key in the environment or app/.env: the host `wandb login --host` saved and the key it
    wrote to netrc take the scripts online, against that host."""
    config_dir = tmp_path / "wandb-config"
    config_dir.mkdir()
    (config_dir / "settings").write_text(f"[default]\nbase_url = {standin.url}\n")
    netrc = tmp_path / "netrc"
    host = standin.url.split("://")[1]  # what `wandb login --host URL` writes: host and port
    netrc.write_text(f"machine {host}\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    env = script_env(standin, tmp_path, WANDB_API_KEY=None, WANDB_BASE_URL=None, WANDB_MODE=None,
                     WANDB_CONFIG_DIR=str(config_dir), NETRC=str(netrc))
    proc, _ = run_script(env, tmp_path, str(SCRIPTS / "train.py"), "--retrain",
                         "--model", "wandb-registry-model/digits-convnet:candidate")
    assert proc.returncode == 2 and "was not found in W&B" in proc.stderr, proc.stderr  # online: asked W&B
    assert "runs offline" not in proc.stderr
    assert standin.operations()[:1] == ["Viewer"]


def test_the_sweep_command_wandb_agent_builds_runs_train(tmp_path):
    """sweep.yaml's command, rendered by the SDK's own functions as `wandb agent` renders it,
    runs train.py in a shell set up as the README says (the venv's python first on PATH)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    ws = make_workspace(tmp_path / "ws")
    ws.run("data_prep", "--dataset", "digits")
    config = yaml.safe_load((REPO / "sweep.yaml").read_text())
    params = {"arch": "convnet", "lr": 0.001, "batch_size": 64, "width": 8, "label_smoothing": 0.1, "epochs": 1}
    command = {"args": {k: {"value": v} for k, v in params.items()}, "program": config["program"]}
    sweep_vars = sweep_utils.create_sweep_command_args(command)
    # the agent's own substitution (wandb_agent.Agent._command_run), for a command-line agent
    sweep_vars.update(interpreter=["python"], program=[str(REPO / config["program"])], env=["/usr/bin/env"])
    argv = []
    for part in sweep_utils.create_sweep_command(list(config["command"])):
        argv += sweep_vars.get(part[2:-1]) or [] if part.startswith("${") else [part]
    env = {**ws.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(argv, cwd=ws.path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "digits-convnet:v0" in proc.stdout and "--lr=0.001" in argv


def test_listing_shows_datasets_models_and_registry_versions_with_aliases(online, standin):
    standin.add_artifact("digits-split", "dataset", "digest-d")
    registry_world(standin)
    rows = {(r.collection, r.ref): r for r in online.list()}
    assert set(rows) == {
        ("digits-split", "digits-split:v0"), ("digits-convnet", "digits-convnet:v0"), ("digits-convnet", "digits-convnet:v1"),
        ("wandb-registry-model/digits-convnet", "wandb-registry-model/digits-convnet:v0"),
    }
    registry_row = rows[("wandb-registry-model/digits-convnet", "wandb-registry-model/digits-convnet:v0")]
    assert "to_evaluate" in registry_row.aliases and registry_row.source == "me/proj/digits-convnet:v1"
    assert "to_evaluate" not in rows[("digits-convnet", "digits-convnet:v1")].aliases  # aliases stay per collection
    only = online.list("wandb-registry-model/digits-convnet")
    assert [r.ref for r in only] == ["wandb-registry-model/digits-convnet:v0"]
    assert [v.ref for v in online.find("model", "to_evaluate", registry=True)] == ["wandb-registry-model/digits-convnet:v0"]


def test_a_listing_failure_is_an_error_never_an_empty_list(online, standin):
    registry_world(standin)
    standin.failures["ProjectArtifacts"] = "permission denied"
    with pytest.raises(UserError, match="not a 'not found'"):
        online.list()


def test_an_online_sweep_is_ranked_by_its_metric_with_each_trials_model(online, standin):
    from app.tracking import sweep_online

    weak = standin.add_artifact("digits-convnet", "model", "digest-weak")
    strong = standin.add_artifact("digits-convnet", "model", "digest-strong")
    metric = {"name": "val/best_accuracy", "goal": "maximize"}
    standin.sweeps["abc123"] = {"config": {"method": "bayes", "metric": metric}, "runs": [
        {"name": "trial-a", "state": "finished", "summary": {metric["name"]: 0.81}, "config": {"lr": 0.01},
         "outputs": [weak]},
        {"name": "trial-b", "state": "finished", "summary": {metric["name"]: 0.93}, "config": {"lr": 0.001},
         "outputs": [strong]},
        {"name": "trial-c", "state": "crashed", "summary": {}, "config": {"lr": 0.1}},
    ]}
    ranking = sweep_online.ranking("me/proj/abc123", metric)
    assert [(t["name"], t["model_ref"]) for t in ranking] == [("trial-b", "digits-convnet:v1"), ("trial-a", "digits-convnet:v0")]
    assert ranking[0]["params"] == {"lr": 0.001} and ranking[0]["summary"][metric["name"]] == 0.93
    assert online.peek(ranking[0]["model_ref"]).digest == "digest-strong"  # the ref names the trial's own model
    # --sweep-id as `wandb sweep` prints it is used as it is, not prefixed a second time
    assert sweep_online.sweep_path("me/proj/abc123", online.settings) == "me/proj/abc123"


def test_checkpoint_retention_deletes_old_versions_through_the_public_api_and_keeps_the_best(online, standin):
    """The one keeper (training/checkpoint.py) through a real Run's versions/delete and the SDK:
    while training the newest and the best stay; once finished none, aliases and all."""
    from app.recipe.config import CheckpointOptions
    from app.tracking.session import Run
    from app.training.checkpoint import CheckpointKeeper

    ids = [standin.add_artifact("checkpoint-r1", "checkpoint", f"digest-{i}", {"epoch": i + 1}) for i in range(4)]
    standin.collections[("me", "proj", "checkpoint-r1")]["aliases"]["best"] = 1  # epoch 2 was the best
    run = SimpleNamespace(id="r1", backend=online)
    run.versions = lambda name: Run.versions(run, name)
    run.delete = lambda versions, with_aliases=False: Run.delete(run, versions, with_aliases)
    keeper = CheckpointKeeper(run, None, CheckpointOptions(keep=1), {})

    def deletions():
        return [(r["variables"]["input"]["artifactID"], r["variables"]["input"].get("deleteAliases"))
                for r in standin.requests if r["operation"] == "DeleteArtifact"]

    assert keeper._delete(keep=1) == [0, 2]
    assert deletions() == [(ids[0], False), (ids[2], False)]
    assert [v.ref for v in online.list("checkpoint-r1")] == ["checkpoint-r1:v1", "checkpoint-r1:v3"]
    keeper.finish()  # the run logged its model: every checkpoint goes, `best` and `latest` with them
    assert deletions()[2:] == [(ids[1], True), (ids[3], True)]
    assert run.versions("checkpoint-r1") == []


def test_the_hook_watcher_follows_registry_aliases_online_through_the_real_sdk(online, standin, tmp_path):
    """#38: registry.py watch polls online with the same code as offline (Backend.find through the
    SDK's public API against the stand-in): the start is recorded, an alias move runs its hook once."""
    from app.hooks.config import load_hooks
    from app.hooks.watcher import Watcher

    ids = registry_world(standin)
    log = tmp_path / "ran.txt"
    (tmp_path / "hooks.yaml").write_text(yaml.safe_dump({"hooks": [{
        "name": "record", "collection": "wandb-registry-model/digits-*", "alias": "production",
        "command": [sys.executable, "-c", "import os, sys; open(sys.argv[1], 'a').write(os.environ['HOOK_VERSION'])",
                    str(log)]}]}), encoding="utf-8")
    watcher = Watcher(online, load_hooks(tmp_path / "hooks.yaml"), tmp_path / "state.json", say=lambda s: None)
    try:
        assert watcher.poll() == []  # no production yet; the start is recorded
        standin.link(ids["v0"], "digits-convnet", ["production"])  # a person's move in the W&B UI
        [(hook, move)] = watcher.poll()
        assert move.collection == "wandb-registry-model/digits-convnet" and move.alias == "production"
        assert watcher.wait() == [] and log.read_text() == move.version
        assert watcher.poll() == []  # the same place: no second run
    finally:
        watcher.close()
    assert any(r["operation"] in ("ProjectArtifacts", "ArtifactCollections", "ProjectArtifactCollections")
               or "Artifact" in r["operation"] for r in standin.requests)
