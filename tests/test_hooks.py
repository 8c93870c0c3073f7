"""#38: registry.py watch runs the hooks of hooks.yaml once per alias move, offline and online
through the same code; a restart runs nothing twice; a slow or failing hook holds back no other."""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from app.errors import UserError
from app.hooks.config import load_hooks

RECORD = "import os, sys; open(sys.argv[1], 'a').write(os.environ['HOOK_VERSION'] + ' ' + sys.argv[2] + '\\n')"


def hooks_file(folder: Path, hooks: list[dict], **settings) -> Path:
    path = folder / "hooks.yaml"
    path.write_text(yaml.safe_dump({**settings, "hooks": hooks}), encoding="utf-8")
    return path


def recorder(name: str, alias: str, log: Path, collection: str = "wandb-registry-model/*") -> dict:
    return {"name": name, "collection": collection, "alias": alias,
            "command": [sys.executable, "-c", RECORD, str(log), "{alias}"]}


def test_each_alias_move_runs_its_hooks_exactly_once_also_across_a_restart(trained_copy):
    ws = trained_copy
    ws.run("train", "--epochs", "1", "--width", "8", "--seed", "5")  # digits-convnet:v1
    log = ws.path / "ran.txt"
    hooks = hooks_file(ws.path, [recorder("on-evaluate", "to_evaluate", log), recorder("on-production", "production", log),
                                 recorder("other-collections", "production", log, "wandb-registry-model/cifar*")])
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    start = ws.run("registry", "watch", "--hooks", str(hooks), "--once")
    assert "their next moves run hooks" in start.stderr and not log.exists()  # where aliases were: no move

    ws.run("registry", "link", "digits-convnet:v1", "digits-convnet", "--alias", "to_evaluate")
    ws.run("registry", "alias", "wandb-registry-model/digits-convnet:v1", "production")
    ws.run("registry", "watch", "--hooks", str(hooks), "--once")
    ran = log.read_text().splitlines()
    assert sorted(ran) == ["wandb-registry-model/digits-convnet:v1 production",
                           "wandb-registry-model/digits-convnet:v1 to_evaluate"]

    again = ws.run("registry", "watch", "--hooks", str(hooks), "--once")  # a restart: nothing new
    assert log.read_text().splitlines() == ran and "0 hook run(s) started" in again.stdout

    ws.run("registry", "alias", "wandb-registry-model/digits-convnet:v0", "production")  # moved back: a new move
    ws.run("registry", "watch", "--hooks", str(hooks), "--once")
    assert log.read_text().splitlines()[len(ran):] == ["wandb-registry-model/digits-convnet:v0 production"]
    state = json.loads((ws.path / ".hooks-state.json").read_text())
    assert {r["status"] for r in state["runs"].values()} == {"done"} and len(state["runs"]) == 3


def test_a_failing_hook_is_retried_with_backoff_and_a_slow_one_holds_back_no_other(trained_copy, monkeypatch):
    import app.tracking.settings
    from app.hooks.watcher import Watcher
    from app.tracking.backends import OfflineBackend

    ws = trained_copy
    ws.enter(monkeypatch)
    log = ws.path / "ran.txt"
    hooks = load_hooks(hooks_file(ws.path, [
        {"name": "slow", "collection": "wandb-registry-model/*", "alias": "production",
         "command": [sys.executable, "-c", "import time; time.sleep(5)"]},
        {"name": "failing", "collection": "wandb-registry-model/*", "alias": "production",
         "command": [sys.executable, "-c", "import sys; sys.exit(3)"]},
        recorder("fast", "production", log)], retries=2, backoff_seconds=0.2))
    said = []
    watcher = Watcher(OfflineBackend(app.tracking.settings.load_settings()), hooks, ws.path / "state.json", say=said.append)
    try:
        assert watcher.poll() == []  # the start
        ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
        started = time.monotonic()
        assert sorted(h.name for h, _ in watcher.poll()) == ["failing", "fast", "slow"]
        while not log.exists() or not any("gave up" in s for s in said):
            assert time.monotonic() - started < 4.5, said  # neither waited for the 5-second hook
            time.sleep(0.05)
        runs = {r["hook"]: r for r in watcher.state.data["runs"].values()}
        assert runs["fast"]["status"] == "done" and runs["slow"]["status"] == "running"
        assert runs["failing"]["status"] == "failed" and runs["failing"]["attempts"] == 3
        assert runs["failing"]["error"] == "exit status 3"
        assert any("try 2 of 3 in 0.2 s" in s for s in said) and any("try 3 of 3 in 0.4 s" in s for s in said)
        assert watcher.wait() == ["failing"] and watcher.state.data["runs"][next(
            k for k, r in watcher.state.data["runs"].items() if r["hook"] == "slow")]["status"] == "done"
    finally:
        watcher.close()


def test_a_run_under_way_when_the_watcher_died_runs_again_and_a_finished_one_never(tmp_path):
    from types import SimpleNamespace

    from app.hooks.watcher import Watcher

    log = tmp_path / "ran.txt"
    hooks = load_hooks(hooks_file(tmp_path, [recorder("h", "production", log)]))
    where = {"ref": "wandb-registry-model/m:v0", "digest": "d0"}

    class Registry:  # a backend's find(), the one call the watcher makes
        def find(self, type, alias, registry):
            return [SimpleNamespace(collection="wandb-registry-model/m", ref=where["ref"], digest=where["digest"])]

    first = Watcher(Registry(), hooks, tmp_path / "state.json", say=lambda s: None)
    first.poll()
    where.update(ref="wandb-registry-model/m:v1", digest="d1")
    first.state.update(lambda data: data["positions"].clear())  # (the next poll sees a move)
    first.poll()
    first.wait()
    first.close()
    assert log.read_text().splitlines() == ["wandb-registry-model/m:v1 production"]
    # a watcher that died while the run was under way left it "running"
    state = json.loads((tmp_path / "state.json").read_text())
    [key] = state["runs"]
    state["runs"][key]["status"] = "running"
    (tmp_path / "state.json").write_text(json.dumps(state))
    second = Watcher(Registry(), hooks, tmp_path / "state.json", say=lambda s: None)
    assert [h.name for h, _ in second.poll()] == ["h"]
    second.wait()
    assert [h.name for h, _ in second.poll()] == []  # done now: never again
    second.close()
    assert log.read_text().splitlines() == ["wandb-registry-model/m:v1 production"] * 2


class Receiver(BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.got.append((self.headers.get("Authorization"), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_gets_the_move_as_json_with_its_token_from_the_environment(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from app.hooks.config import check_environment
    from app.hooks.watcher import Watcher

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooks = load_hooks(hooks_file(tmp_path, [{"name": "web", "collection": "*", "alias": "production",
                                              "webhook": {"url_env": "HOOK_TEST_URL", "token_env": "HOOK_TEST_TOKEN"}}]))
    monkeypatch.delenv("HOOK_TEST_URL", raising=False)
    with pytest.raises(UserError, match="HOOK_TEST_TOKEN, HOOK_TEST_URL are not set"):
        check_environment(hooks)
    monkeypatch.setenv("HOOK_TEST_URL", f"http://127.0.0.1:{server.server_port}/hook")
    monkeypatch.setenv("HOOK_TEST_TOKEN", "t0ken")
    check_environment(hooks)
    where = {"ref": "wandb-registry-model/m:v0"}

    class Registry:
        def find(self, type, alias, registry):
            return [SimpleNamespace(collection="wandb-registry-model/m", ref=where["ref"], digest="d")]

    watcher = Watcher(Registry(), hooks, tmp_path / "state.json", say=lambda s: None)
    try:
        watcher.poll()
        where["ref"] = "wandb-registry-model/m:v1"
        watcher.poll()
        assert watcher.wait() == []
    finally:
        watcher.close()
        server.shutdown()
    assert Receiver.got == [("Bearer t0ken", {"hook": "web", "version": "wandb-registry-model/m:v1", "alias": "production",
                                              "collection": "wandb-registry-model/m", "digest": "d"})]
    assert "t0ken" not in (tmp_path / "hooks.yaml").read_text() and "t0ken" not in (tmp_path / "state.json").read_text()


@pytest.mark.parametrize("text, words", [
    ("hooks: []", "needs a list `hooks:` of at least one hook"),
    ("hooks: [{name: a, collection: '*', alias: production}]", "give exactly one of command"),
    ("hooks: [{name: a, collection: '*', alias: p, command: x}]", "command must be a non-empty list"),
    ("hooks: [{name: a, collection: '*', alias: p, webhook: {url: 'https://x'}}]", "a URL or token is never written"),
    ("hooks: [{name: a, alias: p, command: [x]}]", "needs collection"),
    ("retries: -1\nhooks: [{name: a, collection: '*', alias: p, command: [x]}]", "retries must be a number of at least 0"),
    ("hooks: [{name: a, collection: '*', alias: p, command: [x]}, {name: a, collection: '*', alias: q, command: [y]}]",
     "names must be unique"),
    ("hooks: [", "not valid YAML"),
])
def test_a_bad_hooks_file_is_refused_with_its_place_and_the_fix(tmp_path, text, words):
    path = tmp_path / "hooks.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(words)):
        load_hooks(path)


def test_the_example_hooks_file_is_valid():
    hooks = load_hooks(Path(__file__).resolve().parents[1] / "hooks.example.yaml")
    assert [h.name for h in hooks.hooks] == ["evaluate-and-promote", "export-production", "tell-the-team"]
    assert hooks.aliases == ["production", "to_evaluate"] and hooks.retries == 3
