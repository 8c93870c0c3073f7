"""#35: serve.py hardened: uploads bounded while they arrive (bytes, pixels, time), errors as
plain JSON, a reload that never takes the served model down, a bearer token, /docs off by
default, /metrics for Prometheus. In process (FastAPI's TestClient) where the HTTP server's
process is not what is tested; a real serve.py process for time and memory."""
from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import SCRIPTS

httpx = pytest.importorskip("httpx")
PRODUCTION = "wandb-registry-model/digits-convnet:production"


@pytest.fixture
def served(trained_copy, monkeypatch, tmp_path):
    """(workspace, make_client): a TestClient over the real app and the workspace's real store,
    digits-convnet:v0 in production."""
    from fastapi.testclient import TestClient

    import app.tracking.settings
    from app.serving.server import Limits, LiveModel, create_app
    from app.tracking.backends import OfflineBackend

    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    ws.enter(monkeypatch)
    spool = tmp_path / "spool"  # any temporary file a request writes would land here
    spool.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(spool))

    def make_client(**limits):
        live = LiveModel(OfflineBackend(app.tracking.settings.load_settings()), PRODUCTION)
        return TestClient(create_app(live, Limits(**{"max_bytes": 1024 * 1024, **limits}))), live

    return ws, make_client, spool


def png(image: np.ndarray | Image.Image) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, "PNG")
    return buffer.getvalue()


def digit(ws) -> bytes:
    [split] = ws.versions("digits-split")
    return png(np.load(ws.store / "objects" / split["digest"] / "test_images.npy")[0])


def test_uploads_are_bounded_as_they_arrive_and_every_error_is_plain_json(served):
    ws, make_client, spool = served
    client, _ = make_client(max_bytes=100_000, max_pixels=1_000_000)
    ok = client.post("/predict", files={"file": ("d.png", digit(ws), "image/png")})
    assert ok.status_code == 200 and ok.json()["model"].endswith("digits-convnet:v0")

    declared = client.post("/predict", files={"file": ("b.png", b"\0" * 400_000, "image/png")})
    chunks = (b"\0" * 10_000 for _ in range(40))  # no Content-Length: counted as it streams
    streamed = client.post("/predict", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"})
    wide = client.post("/predict", files={"file": ("w.png", png(Image.new("L", (2000, 1000))), "image/png")})
    text = client.post("/predict", files={"file": ("t.png", b"not an image", "image/png")})
    truncated = client.post("/predict", files={"file": ("t.png", digit(ws)[:60], "image/png")})
    empty = client.post("/predict", files={"file": ("e.png", b"", "image/png")})
    no_field = client.post("/predict", files={"other": ("o.png", digit(ws), "image/png")})
    not_multipart = client.post("/predict", content=digit(ws), headers={"content-type": "image/png"})
    answers = {"declared": (declared, 413, "larger than 100000 bytes"), "streamed": (streamed, 413, "larger than"),
               "wide": (wide, 413, "2000x1000 (2,000,000 pixels)"), "text": (text, 415, "not an image"),
               "truncated": (truncated, 415, "not an image"), "empty": (empty, 400, "empty"),
               "no field": (no_field, 400, "form field 'file'"), "not multipart": (not_multipart, 400, "multipart"),
               "unknown path": (client.get("/nowhere"), 404, "Not Found"),
               "wrong method": (client.get("/predict"), 405, "Method Not Allowed")}
    for name, (response, code, words) in answers.items():
        assert response.status_code == code, (name, response.text)
        assert response.headers["content-type"] == "application/json", name
        detail = response.json()["detail"]
        assert isinstance(detail, str) and words in detail, (name, detail)
        assert " at 0x" not in detail and "BytesIO" not in detail, (name, detail)  # no Python object's address
    assert not list(spool.iterdir())  # nothing of any upload was written to disk


def test_a_bearer_token_guards_predict_and_metrics_and_docs_are_off_unless_asked(served):
    ws, make_client, _ = served
    client, _ = make_client(api_key="s3cret-token")
    upload = {"file": ("d.png", digit(ws), "image/png")}
    refused = [client.post("/predict", files=upload),
               client.post("/predict", files=upload, headers={"Authorization": "Bearer wrong"}),
               client.post("/predict", files=upload, headers={"Authorization": "Basic s3cret-token"}),
               client.get("/metrics")]
    assert [r.status_code for r in refused] == [401] * 4
    assert refused[0].headers["www-authenticate"] == "Bearer" and "bearer token" in refused[0].json()["detail"]
    assert client.post("/predict", files=upload, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/health").status_code == 200  # a load balancer's probe needs no token
    assert [client.get(p).status_code for p in ("/docs", "/redoc", "/openapi.json")] == [404] * 3
    with_docs, _ = make_client(docs=True)
    assert with_docs.get("/docs").status_code == 200 and with_docs.get("/openapi.json").status_code == 200


def test_metrics_count_requests_codes_classes_and_name_the_version_served(served):
    ws, make_client, _ = served
    client, _ = make_client()
    for _ in range(3):
        assert client.post("/predict", files={"file": ("d.png", digit(ws), "image/png")}).status_code == 200
    client.post("/predict", files={"file": ("t.png", b"nope", "image/png")})
    page = client.get("/metrics")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(page.text) for s in family.samples}
    assert samples[("serve_requests_total", (("code", "200"), ("path", "/predict")))] == 3
    assert samples[("serve_requests_total", (("code", "415"), ("path", "/predict")))] == 1
    assert samples[("serve_request_seconds_count", (("path", "/predict"),))] == 4
    assert sum(v for (name, _), v in samples.items() if name == "serve_predicted_total") == 3
    assert samples[("serve_confidence_count", ())] == 3
    assert samples[("serve_model_info", (("version", "wandb-registry-model/digits-convnet:v0"),))] == 1


BROKEN_VERSION = """
import json, shutil, sys, tempfile
from pathlib import Path
from app.tracking import backend, start_run
with start_run("train", {"note": "a model whose recipe lacks class_names"}) as run:
    good = run.use("digits-convnet:v0", "model")
    folder = Path(tempfile.mkdtemp())
    for name in ("model.pt", "recipe.json"):
        shutil.copy(good.path / name, folder / name)
    recipe = json.loads((folder / "recipe.json").read_text())
    del recipe["class_names"]
    (folder / "recipe.json").write_text(json.dumps(recipe))
    print(run.log_artifact("digits-convnet", "model", {n: folder / n for n in ("model.pt", "recipe.json")}, {}).ref)
"""


def test_a_version_that_fails_to_load_leaves_the_old_one_serving_and_health_says_why(served):
    from app.serving.server import watch

    ws, make_client, _ = served
    client, live = make_client()
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(live, 0.1, stop), daemon=True)
    watcher.start()
    try:
        made = subprocess.run([sys.executable, "-c", BROKEN_VERSION], cwd=ws.path, env={**ws.env, "PYTHONPATH": str(
            SCRIPTS.parents[1])}, capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip().endswith("digits-convnet:v1")
        ws.run("registry", "link", "digits-convnet:v1", "digits-convnet", "--alias", "production")
        deadline = time.monotonic() + 30
        while (health := client.get("/health").json())["last_reload_error"] is None:
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
        assert health["status"] == "stale" and health["model"] == "wandb-registry-model/digits-convnet:v0"
        assert health["wanted"] == "wandb-registry-model/digits-convnet:v1" and "class_names" in health["last_reload_error"]
        answer = client.post("/predict", files={"file": ("d.png", digit(ws), "image/png")})
        assert answer.status_code == 200 and answer.json()["model"] == "wandb-registry-model/digits-convnet:v0"
        time.sleep(0.3)
        assert watcher.is_alive()  # it keeps checking: production moving back is followed
        ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
        deadline = time.monotonic() + 30
        while (health := client.get("/health").json())["status"] != "ok":
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
        assert health["last_reload_error"] is None and health["wanted"] == health["model"]
    finally:
        stop.set()


@pytest.mark.parametrize("flags, words", [
    (["--reload-every", "0"], "--reload-every/--reload_every: must be a number greater than 0, got 0"),
    (["--reload-every", "-1"], "must be a number greater than 0, got -1"),
    (["--body-timeout", "nan"], "must be a number greater than 0"),
    (["--api-key-env", "NO_SUCH_TOKEN_VARIABLE"], "the environment variable NO_SUCH_TOKEN_VARIABLE is not set"),
])
def test_bad_serve_flags_are_refused_with_the_fix(trained_copy, flags, words):
    trained_copy.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    refused = trained_copy.run("serve", *flags, check=False, timeout=120)
    assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_real_server_cuts_off_slow_uploads_and_refuses_20_huge_images_without_growing(trained_copy, tmp_path):
    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    port = free_port()
    server = subprocess.Popen([sys.executable, str(SCRIPTS / "serve.py"), "--port", str(port), "--body-timeout", "2",
                               "--log-every", "1", "--log-samples", "5"],
                              cwd=ws.path, env=ws.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        [split] = ws.versions("digits-split")
        served = np.load(ws.store / "objects" / split["digest"] / "test_images.npy")[:8]
        for image in served:
            assert httpx.post(f"{base}/predict", files={"file": ("d.png", png(image), "image/png")}).status_code == 200

        # a byte a second: cut off after --body-timeout (2 s), answered 408
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 1000\r\n\r\n")
            start, answer = time.monotonic(), b""
            slow.settimeout(1.0)
            while time.monotonic() - start < 20 and b"\r\n\r\n" not in answer:
                try:
                    slow.sendall(b"x")
                    answer += slow.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    break
            assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 10, answer

        # 20 single-colour 9000x9000 PNGs (about 250 KB each) at once: refused from their headers
        huge = png(Image.new("L", (9000, 9000), 200))
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")  # the peak (VmHWM) starts again from the resident size now
        before = memory_kib(server.pid, "VmRSS")

        async def at_once():
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=20)) as client:
                return await asyncio.gather(*(client.post(f"{base}/predict", files={"file": ("h.png", huge, "image/png")})
                                              for _ in range(20)))
        answers = asyncio.run(at_once())
        assert [a.status_code for a in answers] == [413] * 20 and "9000x9000" in answers[0].json()["detail"]
        grown = (memory_kib(server.pid, "VmHWM") - before) / 1024
        print(f"20 huge PNGs refused: the server grew {grown:.1f} MB at its peak")
        assert grown < 200, f"the server grew {grown:.0f} MB"
        time.sleep(2.5)  # the serve run's reporter logs a window each second
    finally:
        server.terminate()  # SIGTERM, as a job scheduler stops it: the serve run ends finished
        server.wait(30)
    from conftest import leet_records, runs_of

    [serve_dir] = runs_of(ws, "serve")
    records = leet_records(serve_dir)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    logged = {key for item in history for key in item}
    assert {"serve/requests", "serve/requests_per_s", "serve/latency_p99_ms", "serve/errors"} <= logged, logged
    assert sum(item["serve/errors"] for item in history if "serve/errors" in item) >= 21  # 20 huge + the slow one

    # --log-samples 5: five of the eight images answered, an image folder by predicted class
    [samples] = ws.versions("serving-samples")
    assert samples["type"] == "dataset" and samples["metadata"]["samples"] == 5 and samples["metadata"]["served"] == 8
    folder = ws.store / "objects" / samples["digest"]
    files = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    assert len(files) == 5 and all(len(f.parts) == 2 and f.parts[0] in "0123456789" for f in files)
    sent = {png(image) for image in served}
    assert all((folder / f).read_bytes() in sent for f in files)  # kept as uploaded


def test_concurrent_requests_are_answered_in_batches_with_the_answers_of_one_at_a_time(served):
    """Micro-batching: 64 uploads at once through the ASGI app in one event loop are answered by
    fewer model calls than requests, each answer the one a lone request gets."""
    from prometheus_client.parser import text_string_to_metric_families

    ws, make_client, _ = served
    [split] = ws.versions("digits-split")
    images = np.load(ws.store / "objects" / split["digest"] / "test_images.npy")[:16]
    uploads = [png(images[i % 16]) for i in range(64)]
    alone, _ = make_client(max_batch=1)
    expected = [alone.post("/predict", files={"file": ("d.png", u, "image/png")}).json() for u in uploads[:16]]
    batched, _ = make_client(max_batch=32, max_wait=0.05)

    async def at_once():
        transport = httpx.ASGITransport(app=batched.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await asyncio.gather(*(client.post("/predict", files={"file": ("d.png", u, "image/png")})
                                          for u in uploads))
    answers = asyncio.run(at_once())
    assert [a.status_code for a in answers] == [200] * 64
    for i, answer in enumerate(answers):
        body, lone = answer.json(), expected[i % 16]
        assert body["class"] == lone["class"] and abs(body["confidence"] - lone["confidence"]) < 1e-4
    samples = {s.name: s.value for family in text_string_to_metric_families(batched.get("/metrics").text)
               for s in family.samples if s.name.startswith("serve_batch_size")}
    assert samples["serve_batch_size_sum"] == 64 and samples["serve_batch_size_count"] < 64 / 4, samples


def test_drift_against_the_models_validation_predictions_flags_one_class_not_the_validation_images(served):
    """The serve run's drift scores: the validation images served score under DRIFT_PSI, images of
    one class alone far over it (the measurement behind the threshold; figures printed)."""
    import app.tracking.settings
    from app.serving.monitor import DRIFT_PSI, Monitor, reference_for
    from app.tracking.backends import OfflineBackend

    ws, make_client, _ = served
    ws.run("evaluate", "--model", PRODUCTION, "--no-generate-images", "--label-issues", "none")
    _, live = make_client()
    current = live.current
    reference = reference_for(OfflineBackend(app.tracking.settings.load_settings()), current.predictor.recipe, current.digest)
    assert reference is not None and reference.source.startswith("digits-convnet-evaluation:")
    monitor = Monitor(current.predictor.class_names, reference, current.ref)
    from fastapi.testclient import TestClient

    from app.serving.server import Limits, create_app

    watched = TestClient(create_app(live, Limits(max_bytes=1024 * 1024), monitor))
    [split] = ws.versions("digits-split")
    folder = ws.store / "objects" / split["digest"]
    images, labels = np.load(folder / "val_images.npy"), np.load(folder / "val_labels.npy")
    for image in images:
        assert watched.post("/predict", files={"file": ("v.png", png(image), "image/png")}).status_code == 200
    usual, usual_confidences = monitor.window(10.0)
    test_images, test_labels = np.load(folder / "test_images.npy"), np.load(folder / "test_labels.npy")
    for image in test_images:  # other images of the same distribution: sampling noise only
        watched.post("/predict", files={"file": ("t.png", png(image), "image/png")})
    unseen, _ = monitor.window(10.0)
    zeros = np.concatenate([images[labels == 0], test_images[test_labels == 0]])
    for image in zeros:
        watched.post("/predict", files={"file": ("z.png", png(image), "image/png")})
    one_class, _ = monitor.window(10.0)
    print(f"drift: validation images ({usual['serve/requests']}): class PSI {usual['serve/drift_psi_classes']:.3f}, "
          f"confidence PSI {usual['serve/drift_psi_confidence']:.3f}, chi2 p {usual['serve/drift_chi2_p']:.3f}; "
          f"test images ({unseen['serve/requests']}): class PSI {unseen['serve/drift_psi_classes']:.3f}, confidence PSI "
          f"{unseen['serve/drift_psi_confidence']:.3f}, chi2 p {unseen['serve/drift_chi2_p']:.3f}; "
          f"one class ({one_class['serve/requests']}): class PSI {one_class['serve/drift_psi_classes']:.2f}, "
          f"chi2 p {one_class['serve/drift_chi2_p']:.2g}")
    assert usual["serve/requests"] == len(images) and not usual["serve/drift"]
    assert usual["serve/drift_psi_classes"] < DRIFT_PSI / 5 and usual["serve/drift_chi2_p"] > 0.05
    assert not unseen["serve/drift"] and unseen["serve/drift_psi_classes"] < DRIFT_PSI / 2
    assert one_class["serve/drift"] and one_class["serve/drift_psi_classes"] > 4 * DRIFT_PSI
    assert one_class["serve/share/0"] > 0.9 and one_class["serve/drift_chi2_p"] < 1e-6
    assert 0 < usual["serve/latency_p50_ms"] <= usual["serve/latency_p99_ms"] and len(usual_confidences) == len(images)


def test_the_served_sample_is_uniform_over_the_servers_life():
    """Reservoir sampling: the first and the last thousand uploads of 10,000 are kept alike."""
    from app.serving.samples import SampleKeeper

    kept_early = []
    for seed in range(20):
        keeper = SampleKeeper(100, seed=seed)
        for n in range(10_000):
            keeper.offer(n.to_bytes(2, "big"), "x")
        positions = [int.from_bytes(data, "big") for data, _ in keeper.kept]
        assert len(positions) == 100 and keeper.seen == 10_000
        kept_early.append((sum(p < 1000 for p in positions), sum(p >= 9000 for p in positions)))
    early, late = (sum(k[i] for k in kept_early) for i in (0, 1))
    assert 150 < early < 250 and 150 < late < 250  # 10% of 2,000 kept each
