"""Serving speed: onnxruntime against torch, both measured in this run.

    python benchmarks/bench_serve.py [--images 2000] [--requests 200] [--rounds 3] [--concurrency 1 32 200]

1. The predict.py engines in-process (app/serving/predictor.py), the same uint8 batches of
   MNIST-sized digits through the model's ONNX export in onnxruntime and through torch:
   images/s and their ratio.
2. serve.py as users start it, on the ONNX export of a digits model of a temp offline store,
   one model call per request (--max-batch 1) and micro-batched (the default), beside a no-op
   FastAPI upload endpoint (reads the file, decodes it with Pillow, answers a constant), all
   started in this run: `--requests` POST /predict uploads per round with 1, 32 and 200 in
   flight at once (`--concurrency`); requests/s, latency p50 and p99, and the ratios to the no-op.
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
    from app.models.files import save_model
    from app.recipe import InputSpec, Recipe
    from app.recipe.config import from_flags

    recipe = Recipe(from_flags("cnn", 1, {}), InputSpec(1, (28, 28), (0.13,), (0.31,), invert_light_background=True),
                    tuple(str(i) for i in range(10)))
    torch.manual_seed(0)
    model = build_model(recipe)
    batch = np.random.default_rng(0).integers(0, 256, (images, 28, 28), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, recipe, Path(tmp) / "model")
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


NO_OP_SERVER = """
import io, sys
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image
app = FastAPI()

@app.post("/predict")
async def predict(file: UploadFile = File(...)):
    data = await file.read()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return {"class": "0", "confidence": 1.0}

@app.get("/health")
def health():
    return {"engine": "no-op"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


async def _load(url: str, uploads: list[bytes], concurrency: int) -> list[float]:
    """Every upload POSTed, `concurrency` in flight at any time; each one's latency."""
    import httpx

    pending = iter(uploads)
    latencies = []

    async def worker(client):
        for data in pending:
            start = time.perf_counter()
            answer = await client.post(url, files={"file": ("x.png", data, "image/png")})
            answer.raise_for_status()
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies


def measure(command: list[str], ws, uploads: list[bytes], levels: list[int], rounds: int,
            env: dict | None = None) -> dict:
    """Start a server, warm it, then per concurrency level `rounds` rounds of every upload:
    {level: {"rate", "p50", "p99"}} and the engine /health names."""
    import httpx

    port = free_port()
    server = subprocess.Popen([*command, str(port)],  # serve.py: after --port; the no-op: its argument
                              cwd=ws.path, env=env or ws.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                engine = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["engine"]
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start:\n{server.stderr.read()}") from None
                time.sleep(0.3)
        url = f"http://127.0.0.1:{port}/predict"
        asyncio.run(_load(url, uploads[:50], 8))  # warm
        results = {}
        for level in levels:
            latencies, walls = [], []
            for _ in range(rounds):
                start = time.perf_counter()
                latencies += asyncio.run(_load(url, uploads, level))
                walls.append(time.perf_counter() - start)
            ms = np.array(latencies) * 1e3
            results[level] = {"rate": len(uploads) / np.median(walls), "p50": np.percentile(ms, 50),
                              "p99": np.percentile(ms, 99)}
    finally:
        server.terminate()
        server.wait(30)
    return {"engine": engine, **results}


def serving(requests: int, rounds: int, levels: list[int], baseline: Path | None = None) -> None:
    """serve.py on the ONNX export of a digits model, one call per request (--max-batch 1) and
    micro-batched (the default), beside a no-op FastAPI upload endpoint (it reads the file,
    decodes it with Pillow, answers a constant), all in this run."""
    from PIL import Image

    from conftest import make_workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "ws")
        ws.run("data_prep", "--dataset", "digits")
        ws.run("train", "--epochs", "1")
        ws.run("registry", "link", "digits-convnet:v0", "digits-convnet", "--alias", "production")
        ws.run("registry", "export", "wandb-registry-model/digits-convnet:production")
        images = np.random.default_rng(0).integers(0, 256, (20, 40, 40), dtype=np.uint8)
        pngs = []
        for image in images:
            path = Path(tmp) / "x.png"
            Image.fromarray(image).save(path)
            pngs.append(path.read_bytes())
        uploads = [pngs[i % len(pngs)] for i in range(requests)]
        serve = [sys.executable, str(SCRIPTS / "serve.py")]
        servers = {"no-op FastAPI upload": [sys.executable, "-c", NO_OP_SERVER],
                   "serve.py --max-batch 1": [*serve, "--max-batch", "1", "--port"],
                   "serve.py (micro-batched)": [*serve, "--port"]}
        found = {name: measure(command, ws, uploads, levels, rounds) for name, command in servers.items()}
        if baseline is not None:  # another checkout's serve.py (e.g. git worktree add /tmp/old HEAD~3), same run
            name = f"serve.py of {baseline.name}"
            found[name] = measure([sys.executable, str(baseline / "app/pipelines/serve.py"), "--port"], ws, uploads,
                                  levels, rounds, env={**ws.env, "PYTHONPATH": str(baseline)})
            servers[name] = None
    print(f"{requests} uploads of a 40x40 PNG per round, {rounds} rounds, median round's requests/s; latency p50/p99 ms:")
    for name, r in found.items():
        print(f"  {name:26s} ({r['engine']:11s}) " + "   ".join(
            f"{level:3d} at once: {r[level]['rate']:5.0f}/s {r[level]['p50']:6.1f}/{r[level]['p99']:6.1f}"
            for level in levels))
    noop = found["no-op FastAPI upload"]
    for name in list(servers)[1:]:
        print(f"  {name} / no-op: " + ", ".join(f"{found[name][level]['rate'] / noop[level]['rate']:.2f}x at {level}"
                                                  for level in levels))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 200], help="requests in flight at once")
    p.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                   help="also measure the serve.py of another checkout of this repository (an older commit)")
    args = p.parse_args()
    engines(args.images, args.rounds)
    serving(args.requests, args.rounds, args.concurrency, args.baseline)


if __name__ == "__main__":
    main()
