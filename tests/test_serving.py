"""Serving the production model (issue #24): the ONNX export equals torch, predict runs it
through onnxruntime, and serve.py answers many concurrent uploads and follows the alias."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import SCRIPTS

pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")


def test_the_onnx_export_equals_torch_on_the_test_split(trained, tmp_path):
    import torch

    from app.inference import probabilities
    from app.serving.onnx_export import export_onnx
    from app.serving.predictor import Predictor
    from app.models.files import load_model

    [model_version] = trained.versions("digits-convnet")
    [split] = trained.versions("digits-split")
    folder = trained.store / "objects" / model_version["digest"]
    test_images = np.load(trained.store / "objects" / split["digest"] / "test_images.npy")
    model, recipe = load_model(folder)
    export_onnx(model, recipe, tmp_path / "onnx")
    through_onnx = Predictor(folder, tmp_path / "onnx").probabilities(test_images, batch_size=50)
    through_torch = probabilities(model, test_images, torch.device("cpu"), recipe)
    assert through_onnx.shape == (len(test_images), 10)
    assert np.abs(through_onnx - through_torch).max() < 1e-4


def test_a_colour_model_exports_with_its_normalisation_inside(tmp_path):
    import torch

    from app.inference import probabilities
    from app.models import build_model
    from app.serving.onnx_export import export_onnx, onnx_session
    from app.recipe.config import from_flags
    from conftest import recipe_of

    preprocessing = {"size": [12, 10], "channels": 3, "mean": [0.2, 0.5, 0.7], "std": [0.3, 0.2, 0.1],
                     "resize": None, "invert_light_background": False}
    recipe = recipe_of(from_flags("cnn", 1, {}), [3, 12, 10], list("abc"), {}, preprocessing)
    torch.manual_seed(0)
    model = build_model(recipe).eval()
    images = np.random.default_rng(0).integers(0, 256, (9, 12, 10, 3), dtype=np.uint8)
    export_onnx(model, recipe, tmp_path)
    ours = onnx_session(tmp_path).run(None, {"images": images})[0]
    assert np.abs(ours - probabilities(model, images, torch.device("cpu"), recipe)).max() < 1e-4


def digit_pngs(ws, folder, count: int) -> list[str]:
    [split] = ws.versions("digits-split")
    images = np.load(ws.store / "objects" / split["digest"] / "test_images.npy")[:count]
    folder.mkdir()
    paths = []
    for i, image in enumerate(images):
        Image.fromarray(image).resize((32, 32)).save(folder / f"{i:02d}.png")
        paths.append(str(folder / f"{i:02d}.png"))
    return paths


def test_export_logs_an_onnx_artifact_that_predict_runs_like_torch(trained_copy, tmp_path):
    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    out = ws.run("registry", "export", "wandb-registry-model/digits-convnet:production").stdout
    assert "onnx export: digits-convnet-onnx:v0" in out
    [export] = ws.versions("digits-convnet-onnx")
    [model] = ws.versions("digits-convnet")
    assert export["type"] == "onnx" and export["metadata"]["model_digest"] == model["digest"]
    assert export["logged_by"]["id"] in [u["id"] for u in model["used_by"]]  # lineage: model -> export run

    folder = tmp_path / "incoming"
    digit_pngs(ws, folder, 20)
    csv_path = tmp_path / "predictions.csv"
    fast = json.loads(ws.run("predict", str(folder), "--json", "--batch-size", "7", "--output", str(csv_path)).stdout)
    plain = json.loads(ws.run("predict", str(folder), "--json", "--engine", "torch").stdout)
    assert fast["engine"] == "onnxruntime (digits-convnet-onnx:v0)" and plain["engine"] == "torch"
    assert [p["class"] for p in fast["predictions"]] == [p["class"] for p in plain["predictions"]]
    assert np.allclose([p["confidence"] for p in fast["predictions"]],
                       [p["confidence"] for p in plain["predictions"]], atol=1e-4)
    assert all(len(p["top3"]) == 3 and p["top3"][0][0] == p["class"] for p in fast["predictions"])
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == [p["input"] for p in fast["predictions"]] and len(rows) == 20
    from app.evaluation.images import read_inputs

    assert [name for name, _ in read_inputs([str(folder / "0*.png")])] == [str(folder / f"{i:02d}.png") for i in range(10)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read()
        try:
            return httpx.get(url, timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout} s")


async def hammer(url: str, uploads: list[bytes]) -> list:
    limits = httpx.Limits(max_connections=len(uploads))
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(*(client.post(url, files={"file": ("x.png", data, "image/png")})
                                      for data in uploads))


def test_serve_answers_200_concurrent_uploads_refuses_bad_ones_and_follows_production(trained_copy, tmp_path):
    ws = trained_copy
    ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
    ws.run("train", "--dataset", "digits", "--epochs", "1", "--width", "8", "--seed", "3")  # digits-convnet:v1, promoted below
    port = free_port()
    server = subprocess.Popen([sys.executable, str(SCRIPTS / "serve.py"), "--port", str(port), "--reload-every", "0.5",
                               "--max-upload-mb", "1"], cwd=ws.path, env=ws.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_for(f"{base}/health", server)
        [first] = [v for v in ws.versions("wandb-registry-model/digits-convnet")]
        assert health["model"] == "wandb-registry-model/digits-convnet:v0" and health["digest"] == first["digest"]

        files = digit_pngs(ws, tmp_path / "digits", 20)
        uploads = [open(files[i % 20], "rb").read() for i in range(200)]
        answers = asyncio.run(hammer(f"{base}/predict", uploads))
        assert [a.status_code for a in answers] == [200] * 200  # none failed, none lost
        bodies = [a.json() for a in answers]
        assert all(b["model"] == health["model"] and len(b["top3"]) == 3 for b in bodies)
        assert all(bodies[i]["class"] == bodies[i % 20]["class"] for i in range(200))  # same image, same answer

        empty = httpx.post(f"{base}/predict", files={"file": ("e.png", b"", "image/png")})
        text = httpx.post(f"{base}/predict", files={"file": ("t.png", b"not an image", "image/png")})
        big = httpx.post(f"{base}/predict", files={"file": ("b.png", b"\0" * (1024 * 1024 + 1), "image/png")})
        assert (empty.status_code, text.status_code, big.status_code) == (400, 415, 413)
        assert "empty" in empty.json()["detail"] and "not an image" in text.json()["detail"]
        assert "larger than" in big.json()["detail"]

        ws.run("registry", "link", "digits-convnet:v1", "digits-convnet", "--alias", "production")
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/health").json()["model"] != "wandb-registry-model/digits-convnet:v1":
            assert time.monotonic() < deadline, "the server did not follow production"
            time.sleep(0.3)
        after = httpx.post(f"{base}/predict", files={"file": ("x.png", uploads[0], "image/png")}).json()
        assert after["model"] == "wandb-registry-model/digits-convnet:v1"
    finally:
        server.terminate()
        server.wait(30)
