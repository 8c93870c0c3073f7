"""Refs, settings (.env and the mode decision) and the two flag spellings."""
from __future__ import annotations

import argparse

import pytest

from app.tracking import settings as settings_module
from app.cli import Parser
from app.errors import UserError
from app.tracking.refs import parse_ref


@pytest.mark.parametrize("text, expected", [
    ("digits-split", ("digits-split", "latest", None, None, False)),
    ("digits-split:v3", ("digits-split", "v3", None, None, False)),
    ("digits-split:golden", ("digits-split", "golden", None, None, False)),
    ("me/proj/digits-split:latest", ("digits-split", "latest", "proj", "me", False)),
    ("wandb-registry-model/digits-convnet:candidate", ("digits-convnet", "candidate", None, None, True)),
    ("my-org/wandb-registry-model/digits-convnet:v0", ("digits-convnet", "v0", None, None, True)),
])
def test_ref_forms(text, expected):
    ref = parse_ref(text)
    assert (ref.name, ref.alias, ref.project, ref.entity, ref.registry) == expected


def test_a_registry_ref_keeps_its_org():
    ref = parse_ref("my-org/wandb-registry-model/digits-convnet:production")
    assert ref.org == "my-org" and str(ref) == "my-org/wandb-registry-model/digits-convnet:production"
    assert parse_ref("wandb-registry-model/digits-convnet:v0").org is None
    with pytest.raises(UserError, match="not a registry ref"):
        parse_ref("wandb-registry-model/x/y:v0")


def test_ref_version_and_round_trip():
    assert parse_ref("x:v12").version == 12
    assert parse_ref("x:candidate").version is None
    assert str(parse_ref("wandb-registry-model/c:production")) == "wandb-registry-model/c:production"


@pytest.mark.parametrize("text", ["", "a:b:c", "a/b/c/d:x", "../x", "name:", "na me", "x:../y"])
def test_malformed_refs_name_the_accepted_forms(text):
    with pytest.raises(UserError, match="name:alias"):
        parse_ref(text)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setattr(settings_module, "_settings", None)
    return tmp_path


def test_mode_is_offline_without_a_key_with_a_notice_once_per_store(clean_env, capsys, monkeypatch):
    assert settings_module.decide_mode("https://api.wandb.ai") == "offline"
    store = clean_env / "artifact-store"
    monkeypatch.setenv("PIPELINE_STORE_DIR", str(store))
    monkeypatch.delenv("PIPELINE_VERBOSE", raising=False)
    assert settings_module.load_settings().offline
    assert "WANDB_API_KEY" in capsys.readouterr().err  # a new store: the first step says why offline
    store.mkdir()
    for verbose, said in (("", False), ("1", True)):  # later steps: only with -v
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.setattr(settings_module, "_settings", None)
        monkeypatch.setenv("PIPELINE_VERBOSE", verbose)
        settings_module.load_settings()
        assert ("WANDB_API_KEY" in capsys.readouterr().err) == said


def test_mode_is_online_with_a_key_and_wandb_mode_wins(clean_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert settings_module.decide_mode("https://api.wandb.ai") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert settings_module.decide_mode("https://api.wandb.ai") == "offline"
    monkeypatch.setenv("WANDB_MODE", "sideways")
    with pytest.raises(UserError, match="online"):
        settings_module.decide_mode("https://api.wandb.ai")


def test_netrc_from_wandb_login_counts_as_a_key(clean_env, monkeypatch):
    netrc = clean_env / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert settings_module.decide_mode("https://api.wandb.ai") == "online"


def test_env_file_loads_without_overriding_the_shell(clean_env, monkeypatch):
    env_file = clean_env / ".env"
    env_file.write_text("WANDB_PROJECT=from-file\nWANDB_ENTITY=\n# comment\n")
    monkeypatch.setenv("WANDB_ENTITY", "from-shell")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)  # recorded before the file sets it: restored as absent
    settings_module.load_env_file(env_file)
    import os
    assert os.environ["WANDB_PROJECT"] == "from-file"
    assert os.environ["WANDB_ENTITY"] == "from-shell"


def test_env_file_with_a_malformed_line_is_refused(clean_env):
    env_file = clean_env / ".env"
    env_file.write_text("WANDB_PROJECT=ok\nthis is not a setting\n")
    with pytest.raises(UserError, match="malformed line"):
        settings_module.load_env_file(env_file)


def test_env_file_is_read_from_app_whatever_the_working_directory(tmp_path):
    """A copy of the package with its own app/.env, a script run from an unrelated directory:
    the project named in that .env is the one the store writes under."""
    import shutil
    import subprocess
    import sys

    from conftest import REPO, offline_env

    copy = tmp_path / "checkout"
    shutil.copytree(REPO / "app", copy / "app", ignore=shutil.ignore_patterns("__pycache__", ".env"))
    (copy / "app" / ".env").write_text("WANDB_PROJECT=from-env-file\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = offline_env(elsewhere, PYTHONPATH=str(copy))
    proc = subprocess.run([sys.executable, str(copy / "app" / "pipelines" / "data_prep.py"), "--dataset", "digits"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (elsewhere / "artifact-store" / "collections" / "from-env-file" / "digits-split.json").is_file()


def test_an_interrupt_says_what_was_already_logged(capsys, monkeypatch):
    from app import errors

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(errors, "LOGGED", [])
    with pytest.raises(SystemExit) as exit_info:
        errors.exits_cleanly(interrupted)()
    assert exit_info.value.code == 130 and "nothing was logged" in capsys.readouterr().err
    monkeypatch.setattr(errors, "LOGGED", ["digits-convnet:v3"])
    with pytest.raises(SystemExit):
        errors.exits_cleanly(interrupted)()
    message = capsys.readouterr().err
    assert "digits-convnet:v3" in message and "nothing was logged" not in message


def test_a_logged_figure_is_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from app.tracking.session import Run

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    image = Run.image(None, fig)
    assert not plt.fignum_exists(fig.number) and image is not None


def test_both_flag_spellings_and_switches_shown_once(capsys):
    p = Parser()
    p.add_argument("--max-sweep", type=int, default=30, help="size")
    p.add_argument("--warm_start", action="store_true", help="warm")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None, help="weights")
    assert p.parse_args(["--max_sweep", "3"]).max_sweep == 3
    assert p.parse_args(["--max-sweep", "4"]).max_sweep == 4
    assert p.parse_args(["--warm-start"]).warm_start is True and p.parse_args([]).warm_start is False
    assert [p.parse_args(a).pretrained for a in ([], ["--pretrained"], ["--no-pretrained"])] == [None, True, False]
    with pytest.raises(SystemExit):
        p.parse_args(["--warm_start=False"])  # a switch takes no value (sweeps: ${args_no_boolean_flags})
    capsys.readouterr()
    p.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-sweep MAX_SWEEP size (default: 30)" in text and "--max_sweep" not in text
    assert "--warm_start warm" in text and "--warm-start" not in text and "WARM" not in text
    assert "--pretrained, --no-pretrained" in text and "--no-pretrained_" not in text
    group = p.add_argument_group("a group")  # argparse's groups add their own arguments
    group.add_argument("--batch_size", type=int)
    assert p.parse_args(["--batch-size", "8"]).batch_size == 8


def test_every_flag_of_train_py_takes_both_spellings():
    from app.pipelines.train import parse_args

    args = parse_args(["--max-sweep", "3", "--batch-size", "16", "--weight-decay", "0.1", "--sweep_id", "x",
                       "--label-smoothing", "0.1", "--tune"])
    assert (args.max_sweep, args.batch_size, args.weight_decay, args.sweep_id, args.label_smoothing) == \
        (3, 16, 0.1, "x", 0.1)
