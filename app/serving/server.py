"""The HTTP endpoint of serve.py (FastAPI, run by uvicorn): the model a registry ref names,
reloaded when the ref moves.

    GET  /health    {"status": "ok", "model": <version ref>, "digest": ..., "engine": ...}
    POST /predict   multipart form field `file`: an image of any size and mode ->
                    {"class", "confidence", "top3": [[class, p], ...], "model"}

A bad upload is a 4xx with a message: 400 empty, 413 too large, 415 not an image. Inference
runs in FastAPI's thread pool, so the event loop keeps accepting requests meanwhile.
"""
from __future__ import annotations

import io
import sys
import threading
from dataclasses import dataclass

from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool

from app import names
from app.data import image_files
from app.data.preprocessing import of_recipe
from app.errors import UserError, summary
from app.evaluation.images import to_model_input
from app.serving.predictor import Predictor


@dataclass(frozen=True)
class Loaded:
    ref: str  # the version, e.g. wandb-registry-model/digits-convnet:v3
    digest: str
    predictor: Predictor


class LiveModel:
    """The version `ref` names now. `refresh()` loads another one when the ref has moved; until
    the new one is loaded whole, requests keep being answered by the old one."""

    def __init__(self, backend, ref: str):
        self.backend, self.ref = backend, ref
        self.current = self._load()

    def _load(self) -> Loaded:
        from app.tracking import discovery

        version = self.backend.fetch(self.ref, names.MODEL_TYPE)  # verified files, no run needed
        export = discovery.onnx_export(self.backend, version)
        onnx_folder = self.backend.fetch(export.ref, names.ONNX_TYPE).path if export else None
        return Loaded(version.ref, version.digest, Predictor(version.path, onnx_folder))

    def refresh(self) -> bool:
        """True when a new version was loaded."""
        found = self.backend.lookup(self.ref)
        if found is None or found.digest == self.current.digest:
            return False
        self.current = self._load()
        return True

    def predict_bytes(self, data: bytes) -> dict:
        loaded = self.current  # one version for the whole request, whatever a reload does meanwhile
        recipe = loaded.predictor.recipe
        try:
            image = image_files.read_as_stored(io.BytesIO(data))
        except (OSError, ValueError) as err:  # not an image, truncated, a decompression bomb
            raise HTTPException(415, f"the upload is not an image this can read ({summary(err)}); send a PNG or "
                                     "JPEG (or any format Pillow reads) as the form field 'file'.") from err
        probs = loaded.predictor.probabilities(to_model_input(image, of_recipe(recipe))[None])
        [top] = loaded.predictor.top(probs)
        return {"class": top[0][0], "confidence": top[0][1], "top3": top, "model": loaded.ref}


def watch(live: LiveModel, every: float, stop: threading.Event) -> None:
    """Check every `every` seconds whether the ref moved; a failed check keeps the model served."""
    while not stop.wait(every):
        try:
            if live.refresh():
                print(f"serve: {live.ref} moved; now serving {live.current.ref}", file=sys.stderr, flush=True)
        except UserError as err:
            print(f"serve: could not check {live.ref} ({err}); still serving {live.current.ref}", file=sys.stderr)


def create_app(live: LiveModel, max_bytes: int) -> FastAPI:
    app = FastAPI(title="wandb-image-pipeline model server")

    @app.get("/health")
    def health() -> dict:
        loaded = live.current
        return {"status": "ok", "model": loaded.ref, "digest": loaded.digest, "engine": loaded.predictor.engine}

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> dict:  # noqa: B008 - FastAPI's documented form
        data = await file.read(max_bytes + 1)
        if not data:
            raise HTTPException(400, "the upload is empty; send an image file as the form field 'file'.")
        if len(data) > max_bytes:
            raise HTTPException(413, f"the upload is larger than {max_bytes} bytes; send a smaller image "
                                     "(or start serve.py with a larger --max-upload-mb).")
        return await run_in_threadpool(live.predict_bytes, data)

    return app
