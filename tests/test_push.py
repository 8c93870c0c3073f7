"""`registry.py push`: an offline flow's lineage, links and aliases replayed into W&B, through the
real wandb SDK against the GraphQL stand-in (tests/wandb_standin.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app.tracking.store import Store
from conftest import SCRIPTS
from wandb_standin import StandIn

PROJECT = "wandb-image-pipeline"
KEY = "k" * 40


def mirror_sync(standin, store_root, skip_runs=()) -> None:
    """What `wandb sync` leaves in W&B: every offline run under its own id, with the artifacts
    it logged (same digests); no inputs, no registry."""
    store = Store(store_root)
    for coll in store.collections(PROJECT):
        for version in coll["versions"]:
            for run in [version["logged_by"], *version["used_by"]]:
                if run["id"] not in standin.runs and run["id"] not in skip_runs:
                    standin.add_run(run["id"], run.get("job_type"))
            if version["logged_by"]["id"] in skip_runs:
                continue
            artifact_id = standin.add_artifact(coll["name"], coll["type"], version["digest"], version["metadata"],
                                               project=PROJECT)
            standin.runs[version["logged_by"]["id"]]["outputs"].append(artifact_id)


@pytest.fixture(scope="module")
def offline_flow(tmp_path_factory):
    """data_prep, train, link candidate, retrain, evaluate --promote: offline, once."""
    from conftest import make_workspace

    ws = make_workspace(tmp_path_factory.mktemp("offline-flow"))
    ws.run("data_prep", "--dataset", "digits")
    ws.run("train", "--epochs", "1", "--width", "8")
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "candidate")
    ws.run("train", "--retrain", "--epochs", "1")
    ws.run("evaluate", "--promote", "--no-generate-images")
    return ws


@pytest.fixture
def standin():
    server = StandIn().start()
    yield server
    server.stop()


def push(ws, standin, *args):
    env = {**ws.env, "WANDB_BASE_URL": standin.url, "WANDB_API_KEY": KEY, "WANDB_MODE": "online",
           "WANDB_ENTITY": "me"}
    return subprocess.run([sys.executable, str(SCRIPTS / "registry.py"), "push", *args], cwd=ws.path, env=env,
                          capture_output=True, text=True, timeout=300)


MUTATIONS = ("UseArtifact", "LinkArtifact", "AddAliases", "UpdateArtifact")


def mutations(standin) -> list[dict]:
    return [r for r in standin.requests if r["operation"] in MUTATIONS]


def test_push_replays_every_use_link_and_alias_once(offline_flow, standin):
    ws = offline_flow
    mirror_sync(standin, ws.store)
    store = Store(ws.store)
    uses = {(user["id"], standin.collections[("me", PROJECT, coll["name"])]["members"][version["version"]])
            for coll in store.collections(PROJECT) for version in coll["versions"] for user in version["used_by"]}
    [registry] = store.collections("wandb-registry-model")

    plan = push(ws, standin, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.count("  use ") == len(uses) and plan.stdout.count("  link ") == len(registry["versions"])
    assert mutations(standin) == []  # --dry-run changed nothing

    done = push(ws, standin)
    assert done.returncode == 0, done.stderr
    declared = {(r["variables"]["runName"], r["variables"]["artifactID"])
                for r in mutations(standin) if r["operation"] == "UseArtifact"}
    assert declared == uses  # one input declaration per recorded use, on the run that used it
    links = [r["variables"]["input"] for r in mutations(standin) if r["operation"] == "LinkArtifact"]
    sources = [standin.collections[("me", PROJECT, "digits-convnet")]["members"][int(v["source"].split(":v")[1])]
               for v in registry["versions"]]
    assert [link["artifactID"] for link in links] == sources  # in the store's version order
    online = standin.aliases_of("my-org-entity", "wandb-registry-model", "digits-convnet")
    offline = {a: v for a, v in registry["aliases"].items()}
    assert {a: online.get(a) for a in ("candidate", "to_evaluate", "production")} == \
        {a: offline.get(a) for a in ("candidate", "to_evaluate", "production")}
    assert "to_evaluate" not in offline and "production" in offline  # the promotion consumed it (#36)

    # the evaluated card, the promoted version's description offline, is its synced artifact's now
    [model] = [v for v in store.read_collection(PROJECT, "digits-convnet")["versions"]
               if v["description"] and "Evaluated by run" in v["description"]]
    synced_model = standin.collections[("me", PROJECT, "digits-convnet")]["members"][model["version"]]
    assert standin.artifacts[synced_model]["description"] == model["description"]

    before = len(mutations(standin))
    again = push(ws, standin)
    assert again.returncode == 0 and "nothing to push" in again.stdout
    assert len(mutations(standin)) == before  # a second push sends no mutation


def test_an_unsynced_run_is_reported_with_its_sync_command_and_skipped(offline_flow, standin):
    ws = offline_flow
    evaluation = Store(ws.store).read_collection(PROJECT, "digits-convnet-evaluation")["versions"][0]
    eval_run = evaluation["logged_by"]["id"]
    mirror_sync(standin, ws.store, skip_runs={eval_run})
    proc = push(ws, standin)
    assert proc.returncode == 0, proc.stderr
    assert f"not in W&B yet, skipped: run {eval_run}" in proc.stdout and "wandb sync " in proc.stdout
    assert eval_run in proc.stdout.split("wandb sync ", 1)[1]  # names that run's own folder
    assert all(r["variables"]["runName"] != eval_run for r in mutations(standin) if r["operation"] == "UseArtifact")


def test_push_needs_w_and_b(offline_flow):
    proc = offline_flow.run("registry", "push", check=False)
    assert proc.returncode == 2 and "wandb login" in proc.stderr
