"""Serving speed: onnxruntime against torch, both measured in this run.

    python benchmarks/bench_serve.py [--images 2000] [--requests 200] [--rounds 3]

1. The predict.py engines in-process (app/serving/predictor.py), the same uint8 batches of
   MNIST-sized digits through the model's ONNX export in onnxruntime and through torch:
   images/s and their ratio.
2. serve.py as users start it, on a digits model of a temp offline store: `--requests`
   concurrent POST /predict uploads per round, against the server on the ONNX export and the
   same server on torch (the model without its export); latency percentiles and requests/s.
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
SCRIPTS = REPO / "app" / "pipelines"


def engines(images: int, rounds: int) -> None:
    import torch

    from app.models import build_model
    from app.serving.onnx_export import export_onnx
    from app.serving.predictor import Predictor
    from app.training.checkpoint import save_checkpoint
    from app.training.config import from_flags
    from app.training.recipe import make_recipe

    recipe = make_recipe(from_flags("cnn", 1, {}), [1, 28, 28], [str(i) for i in range(10)], {},
                         {"size": [28, 28], "channels": 1, "mean": [0.13], "std": [0.31], "resize": None,
                          "invert_light_background": True})
    torch.manual_seed(0)
    model = build_model(recipe)
    batch = np.random.default_rng(0).integers(0, 256, (images, 28, 28), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(model, recipe, Path(tmp) / "model")
        export_onnx(model, recipe, Path(tmp) / "onnx")
        predictors = {"torch": Predictor(Path(tmp) / "model"), "onnxruntime": Predictor(Path(tmp) / "model", Path(tmp) / "onnx")}
        rates = {name: [] for name in predictors}
        for _ in range(rounds):  # interleaved, so a slow spell of the machine hits both
            for name, predictor in predictors.items():
                predictor.probabilities(batch[:256])  # warm
                start = time.perf_counter()
                predictor.probabilities(batch, batch_size=256)
                rates[name].append(images / (time.perf_counter() - start))
    torch_rate, onnx_rate = np.median(rates["torch"]), np.median(rates["onnxruntime"])
    print(f"predict engines, {images} 28x28 images, batch 256 (median of {rounds}): torch {torch_rate:,.0f} images/s, "
          f"onnxruntime {onnx_rate:,.0f} images/s, ratio {onnx_rate / torch_rate:.2f}x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _hammer(url: str, uploads: list[bytes]) -> list[float]:
    import httpx

    async def one(client, data):
        start = time.perf_counter()
        answer = await client.post(url, files={"file": ("x.png", data, "image/png")})
        answer.raise_for_status()
        return time.perf_counter() - start

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=len(uploads))) as client:
        return await asyncio.gather(*(one(client, d) for d in uploads))


def serve_round(ws, uploads: list[bytes], rounds: int) -> dict:
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, str(SCRIPTS / "serve.py"), "--port", str(port)], cwd=ws.path, env=ws.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                engine = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["engine"]
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"serve.py did not start:\n{server.stderr.read()}") from None
                time.sleep(0.3)
        asyncio.run(_hammer(f"http://127.0.0.1:{port}/predict", uploads[:20]))  # warm
        latencies, walls = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            latencies += asyncio.run(_hammer(f"http://127.0.0.1:{port}/predict", uploads))
            walls.append(time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(30)
    ms = np.array(latencies) * 1e3
    return {"engine": engine, "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99),
            "rate": len(uploads) / np.median(walls)}


def serving(requests: int, rounds: int) -> None:
    from PIL import Image

    from conftest import make_workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "ws")
        ws.run("data_prep", "--dataset", "digits")
        ws.run("train", "--epochs", "1")
        ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
        images = np.random.default_rng(0).integers(0, 256, (20, 40, 40), dtype=np.uint8)
        pngs = []
        for image in images:
            path = Path(tmp) / "x.png"
            Image.fromarray(image).save(path)
            pngs.append(path.read_bytes())
        uploads = [pngs[i % len(pngs)] for i in range(requests)]
        plain = serve_round(ws, uploads, rounds)
        ws.run("registry", "export", "wandb-registry-model/digits-convnet:production")
        fast = serve_round(ws, uploads, rounds)
    for r in (plain, fast):
        print(f"serve.py, {requests} concurrent uploads x {rounds} rounds, {r['engine']:11}: latency p50 {r['p50']:.0f} ms, "
              f"p95 {r['p95']:.0f} ms, p99 {r['p99']:.0f} ms; {r['rate']:.0f} requests/s")
    print(f"  ratio onnxruntime / torch: {fast['rate'] / plain['rate']:.2f}x requests/s, "
          f"{plain['p50'] / fast['p50']:.2f}x lower median latency")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    engines(args.images, args.rounds)
    serving(args.requests, args.rounds)


if __name__ == "__main__":
    main()
