"""The everyday experience (issue #36): quiet output, a store that does not fill up, several
datasets side by side, predict past an unreadable file, a refused promotion's own exit status,
switches shown as switches, and the learning curves in evaluate's report."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, SCRIPTS
from test_hostile_inputs_2 import small_folder
from test_online_contract import online, standin  # noqa: F401 (fixtures)

SCRIPT_NAMES = ("data_prep", "train", "evaluate", "predict", "serve", "registry")


def production_of(ws, collection: str) -> dict | None:
    return next((v for v in ws.versions(f"wandb-registry-model/{collection}") if "production" in v["aliases"]), None)


def test_two_datasets_side_by_side_each_step_takes_the_newest_datasets_model(workspace, tmp_path):
    """The README's flow on digits, then on a folder of one's own, in one folder, with no
    --dataset after data_prep: no step acts on the other dataset's model."""
    ws = workspace

    def flow(epochs: str):
        """train, a candidate (as --tune would link its best), --retrain, evaluate --promote."""
        model = ws.run("train", "--epochs", epochs).stdout.split("model artifact: ")[1].split()[0]
        ws.run("registry", "link", model, model.split(":")[0], "--alias", "candidate")
        ws.run("train", "--retrain", "--epochs", epochs)  # the candidate's own training: linked, not repeated
        return ws.run("evaluate", "--promote")

    ws.run("data_prep", "--dataset", "digits")
    digits = flow("1")
    assert "promoted to wandb-registry-model/digits-convnet:v0" in digits.stdout
    digits_production = production_of(ws, "digits-convnet")
    assert "to_evaluate" not in digits_production["aliases"]  # consumed by its promotion
    page = Path(digits.stdout.split("report: ")[1].splitlines()[0]).read_text()
    assert "How it trained" in page and 'alt="learning curves: loss and accuracy per epoch"' in page

    folder = small_folder(tmp_path / "shapes", classes=("circle", "square", "star"), per_class=12)
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", str(folder))
    # before the new dataset has a model: the steps refuse, naming digits' collection and the flag
    for script, args in (("train", ["--retrain"]), ("predict", [str(folder / "star" / "0.png")])):
        refused = ws.run(script, *args, check=False)
        assert refused.returncode == 2 and "no registry collection of the newest dataset, shapes" in refused.stderr
        assert "digits-convnet (--dataset digits)" in refused.stderr
    shapes = flow("2")
    assert "wandb-registry-model/shapes-convnet" in shapes.stdout and "digits-convnet" not in shapes.stdout
    assert production_of(ws, "digits-convnet") == digits_production  # untouched
    predicted = ws.run("predict", "--json", str(folder / "star" / "0.png"))
    assert json.loads(predicted.stdout)["model"].startswith("wandb-registry-model/shapes-convnet:")
    by_flag = ws.run("predict", "--json", "--dataset", "digits", str(folder / "star" / "0.png"))
    assert json.loads(by_flag.stdout)["model"].startswith("wandb-registry-model/digits-convnet:")


def test_prune_plans_by_default_and_never_deletes_what_an_alias_a_run_or_a_link_holds(trained_copy):
    ws = trained_copy
    for seed in ("1", "2", "3"):
        ws.run("train", "--epochs", "1", "--width", "8", "--seed", seed)  # digits-convnet v1..v3, unused
    ws.run("registry", "link", "digits-convnet:v1", "digits-convnet", "--alias", "candidate")  # a registry link
    ws.run("evaluate", "--model", "digits-convnet:v2", "--no-generate-images")  # a run used v2
    before = ws.store_snapshot()
    plan = ws.run("registry", "prune", "--keep", "1")
    assert ws.store_snapshot() == before  # a plan changes nothing
    # v0: the trained fixture's, used by nobody yet but older: goes; v1 linked, v2 used, v3 newest: stay
    assert re.findall(r"would delete (\S+)", plan.stdout) == ["digits-convnet:v0"]
    done = ws.run("registry", "prune", "--keep", "1", "--yes")
    assert "deleted 1 version(s)" in done.stdout
    left = {v["ref"] for v in ws.versions("digits-convnet")}
    assert left == {"digits-convnet:v1", "digits-convnet:v2", "digits-convnet:v3"}
    assert ws.versions("digits-split") and ws.versions("digits-convnet-evaluation")  # used or newest: kept
    assert "nothing to prune" in ws.run("registry", "prune", "--keep", "1").stdout


def test_every_script_takes_verbose_and_shows_switches_as_switches():
    for script in SCRIPT_NAMES:
        help_text = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), "--help"], capture_output=True,
                                   text=True, timeout=120, check=True).stdout
        assert "-v, --verbose" in help_text, script
        assert "(default: True)" not in help_text and "(default: False)" not in help_text, script


def test_printed_commands_name_the_script_as_it_was_started(tmp_path):
    probe = ("import sys; sys.argv[0] = {argv0!r}; from app.cli import command; print(command('registry'))")
    for argv0, expected in (("../app/pipelines/train.py", "python ../app/pipelines/registry.py"),
                            ("app/pipelines/train.py", "python app/pipelines/registry.py"),
                            ("-c", "python app/pipelines/registry.py")):
        out = subprocess.run([sys.executable, "-c", probe.format(argv0=argv0)], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout.strip()
        assert out == expected
    as_module = subprocess.run([sys.executable, "-m", "app.pipelines.registry", "list"], capture_output=True, text=True,
                               cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "WANDB_MODE": "offline",
                                                  "PIPELINE_STORE_DIR": str(tmp_path / "store")})
    assert "`python -m app.pipelines.data_prep --dataset digits`" in as_module.stdout, as_module.stderr


def test_online_the_evaluated_versions_to_evaluate_is_taken_off_and_prune_deletes_through_the_sdk(online, standin):
    from app.tracking.retention import prune_plan

    ids = {f"v{i}": standin.add_artifact("digits-convnet", "model", f"digest-{i}") for i in range(3)}
    standin.link(ids["v2"], "digits-convnet", ["to_evaluate"])
    assert online.remove_alias("wandb-registry-model/digits-convnet:v0", "to_evaluate")
    assert "to_evaluate" not in standin.aliases_of("my-org-entity", "wandb-registry-model", "digits-convnet")
    assert "DeleteAliases" in standin.operations()
    assert not online.remove_alias("wandb-registry-model/digits-convnet:v0", "to_evaluate")  # nothing to take off

    doomed = prune_plan(online.list(), keep=1)  # v2: the newest, and linked in the registry
    assert [v.ref for v in doomed] == ["digits-convnet:v0", "digits-convnet:v1"]
    online.delete(doomed)
    assert standin.artifacts[ids["v0"]].get("deleted") and standin.artifacts[ids["v1"]].get("deleted")
    assert not standin.artifacts[ids["v2"]].get("deleted")


def test_predict_reads_what_it_can_and_refuses_when_nothing_is_readable(production_model, tmp_path):
    ws = production_model
    (tmp_path / "bad.png").write_bytes(b"not a png")
    good = tmp_path / "good.png"
    Image.fromarray((np.eye(8) * 255).astype(np.uint8)).resize((32, 32)).save(good)
    proc = ws.run("predict", str(tmp_path / "bad.png"), str(good))
    assert proc.stdout.startswith(f"{good}: ") and "bad.png: " in proc.stderr and "skipped 1 file(s)" in proc.stderr
    none = ws.run("predict", str(tmp_path / "bad.png"), check=False)
    assert none.returncode == 2 and "none of the 1 file(s) given could be read" in none.stderr
    strict = ws.run("predict", "--strict", str(tmp_path / "bad.png"), str(good), check=False)
    assert strict.returncode == 2 and "bad.png is not an image this can read" in strict.stderr


@pytest.fixture
def production_model(trained_copy):
    trained_copy.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    return trained_copy
