"""The HTTP endpoint of serve.py (FastAPI, run by uvicorn): the model a registry ref names,
reloaded when the ref moves.

    GET  /health    {"status": "ok" | "stale", "model": <version served>, "wanted": <version the ref
                    names>, "last_reload_error": ..., "digest": ..., "engine": ...}
    POST /predict   multipart form field `file`: an image of any size and mode ->
                    {"class", "confidence", "top3": [[class, p], ...], "model"}
    GET  /metrics   Prometheus' text format (prometheus-client)

Uploads are bounded as they arrive: a Content-Length over --max-upload-mb is refused before a
byte is read, the body is counted as it streams in (held in memory, never spooled to disk) and
cut off at the limit, and one that takes longer than --body-timeout is cut off too. An image's
size is read from its header and refused over --max-pixels before it is decoded. Every error is
JSON, {"detail": "a plain message"}: 400 empty or no `file` field, 401 no or wrong token (with
--api-key-env), 408 too slow, 413 too large, 415 not an image. Inference runs in FastAPI's
thread pool, so the event loop keeps accepting requests meanwhile.
"""
from __future__ import annotations

import asyncio
import hmac
import io
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser

from app import names
from app.data import image_files
from app.errors import summary
from app.inference import to_model_input
from app.serving.batching import MicroBatcher
from app.serving.predictor import Predictor

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; a classifier needs far less


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_batch: int = 32  # images of concurrent requests in one model call (1: no micro-batching)
    max_wait: float = 0.002  # seconds a batch waits for more after its first image
    max_pixels: int = DEFAULT_MAX_PIXELS
    body_timeout: float = 30.0  # seconds for the whole body to arrive
    api_key: str | None = None  # a bearer token /predict and /metrics require (serve.py --api-key-env)
    docs: bool = False  # /docs, /redoc and /openapi.json (serve.py --docs)


@dataclass(frozen=True)
class Loaded:
    ref: str  # the version, e.g. wandb-registry-model/digits-convnet:v3
    digest: str
    predictor: Predictor


class LiveModel:
    """The version `ref` names now. `refresh()` loads another one when the ref has moved; until
    the new one is loaded whole, requests keep being answered by the old one, and a version that
    fails to load (any error) leaves the old one serving: the version wanted and the reason are
    kept for /health, and the next check tries again."""

    def __init__(self, backend, ref: str):
        self.backend, self.ref = backend, ref
        self.current = self._load(backend.fetch(ref, names.MODEL_TYPE))
        self.wanted: str = self.current.ref
        self.last_error: str | None = None

    def _load(self, version) -> Loaded:
        from app.tracking import discovery

        export = discovery.onnx_export(self.backend, version)
        onnx_folder = self.backend.fetch(export.ref, names.ONNX_TYPE).path if export else None
        return Loaded(version.ref, version.digest, Predictor(version.path, onnx_folder))

    def refresh(self) -> bool:
        """True when a new version was loaded. Raises when the ref cannot be looked up or the
        version it names cannot be loaded; the current version stays."""
        found = self.backend.lookup(self.ref)
        if found is None or found.digest == self.current.digest:
            self.wanted, self.last_error = self.current.ref, None
            return False
        self.wanted = found.ref
        self.current = self._load(self.backend.fetch(self.ref, names.MODEL_TYPE))  # verified files, no run needed
        self.wanted, self.last_error = self.current.ref, None
        return True

    def model_input(self, data: bytes, max_pixels: int) -> tuple[Loaded, np.ndarray]:
        """(the version that answers, the upload brought to its input): one version for the whole
        request, whatever a reload does meanwhile."""
        loaded = self.current
        return loaded, to_model_input(read_image(data, max_pixels), loaded.predictor.recipe.input)


def answers(loaded: Loaded, batch: np.ndarray) -> list[dict]:
    """One model call for a batch of model inputs -> each image's answer."""
    return [{"class": top[0][0], "confidence": top[0][1], "top3": top, "model": loaded.ref}
            for top in loaded.predictor.top(loaded.predictor.probabilities(batch))]


def read_image(data: bytes, max_pixels: int):
    """The upload decoded, after its header's size was checked against `max_pixels`."""
    try:
        with image_files.open_image(io.BytesIO(data)) as picture:
            width, height = picture.size
            if width * height > max_pixels:
                raise HTTPException(413, f"the image is {width}x{height} ({width * height:,} pixels), more than this "
                                         f"server decodes ({max_pixels:,}, serve.py --max-pixels); send a smaller "
                                         "image.")
            picture.load()
            return image_files.fit_image(picture, image_files.channels_of_mode(picture.mode), None)
    except HTTPException:
        raise
    except (OSError, ValueError) as err:  # not an image, truncated, a decompression bomb
        # PIL's messages name the file object (<_io.BytesIO object at 0x...>): not for a client
        reason = "its format is not one Pillow reads" if "cannot identify" in str(err) else \
            summary(err).split(" <_io.")[0]
        raise HTTPException(415, f"the upload is not an image this can read ({reason}); send a PNG or JPEG (or any "
                                 "format Pillow reads) as the form field 'file'.") from err


def watch(live: LiveModel, every: float, stop: threading.Event) -> None:
    """Check every `every` seconds whether the ref moved. Nothing a check raises ends the watcher:
    the version served stays, the reason is logged once (and kept for /health) and retried."""
    while not stop.wait(every):
        try:
            if live.refresh():
                print(f"serve: {live.ref} moved; now serving {live.current.ref}", file=sys.stderr, flush=True)
        except Exception as err:  # noqa: BLE001 - whatever failed, the served model must stay up
            reason = summary(err)
            if reason != live.last_error:
                print(f"serve: could not load {live.wanted} for {live.ref} ({reason}); still serving "
                      f"{live.current.ref}", file=sys.stderr, flush=True)
            live.last_error = reason


class _InMemoryMultiPart(MultiPartParser):
    spool_max_size = 2**62  # the body is already bounded and in memory: never spool a part to disk


async def read_upload(request: Request, limits: Limits) -> bytes:
    """The `file` field of a multipart upload, the body bounded in size and time as it arrives."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits.max_bytes)
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise HTTPException(400, "send the image as the form field 'file' of a multipart/form-data upload "
                                 "(curl -F file=@image.png ...).")

    async def body() -> bytes:
        received = bytearray()
        async for chunk in request.stream():
            received += chunk
            if len(received) > limits.max_bytes:
                raise _too_large(limits.max_bytes)
        return bytes(received)

    try:
        data = await asyncio.wait_for(body(), limits.body_timeout)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the upload took longer than {limits.body_timeout:g} s to arrive (serve.py "
                                 "--body-timeout); send it again on a faster connection.") from None

    async def replay():
        yield data
        yield b""

    try:
        form = await _InMemoryMultiPart(request.headers, replay(), max_files=1, max_fields=10,
                                        max_part_size=limits.max_bytes).parse()
    except Exception as err:  # noqa: BLE001 - starlette's MultiPartException and the parser's own errors
        raise HTTPException(400, f"the multipart body cannot be read ({summary(err)}); send the image as the form "
                                 "field 'file'.") from err
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "the upload has no file in the form field 'file'; send an image file as 'file'.")
    content = await upload.read()
    if not content:
        raise HTTPException(400, "the upload is empty; send an image file as the form field 'file'.")
    return content


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"the upload is larger than {max_bytes} bytes; send a smaller image (or start serve.py "
                              "with a larger --max-upload-mb).")


class CountRequests:
    """Every request's path, status code and time into /metrics: a plain ASGI middleware
    (Starlette's @app.middleware("http") wraps each response and cost 0.4 ms a request here)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(scope["path"], status[0], time.perf_counter() - start)


def create_app(live: LiveModel, limits: Limits, monitor=None, keeper=None) -> FastAPI:
    """The app; `monitor` (app/serving/monitor.py), when given, records every /predict answer,
    `keeper` (app/serving/samples.py) is offered every image answered."""
    from app.serving.metrics import ServerMetrics

    docs = {} if limits.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="wandb-image-pipeline model server", **docs)
    metrics = ServerMetrics()
    batcher = MicroBatcher(answers, limits.max_batch, limits.max_wait, on_batch=metrics.batch.observe) \
        if limits.max_batch > 1 else None

    def authorise(request: Request) -> None:
        if limits.api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # compared in constant time: how long a wrong token takes says nothing about the right one
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), limits.api_key.encode()):
            raise HTTPException(401, "a valid bearer token is needed: send 'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(StarletteHTTPException)
    async def plain_http_error(request: Request, err: StarletteHTTPException):
        return JSONResponse({"detail": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def plain_validation_error(request: Request, err: RequestValidationError):
        return JSONResponse({"detail": "the request is not one this endpoint takes: POST an image as the form field "
                                       "'file'."}, status_code=422)

    app.add_middleware(CountRequests, metrics=metrics)

    @app.get("/health")
    def health() -> dict:
        loaded = live.current
        return {"status": "ok" if live.wanted == loaded.ref else "stale", "model": loaded.ref, "wanted": live.wanted,
                "last_reload_error": live.last_error, "digest": loaded.digest, "engine": loaded.predictor.engine}

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        authorise(request)
        start = time.perf_counter()
        if batcher is not None:
            batcher.coming += 1  # a batch being gathered waits for this one
        try:
            data = await read_upload(request, limits)
            answer = await answer_image(data)
        except HTTPException:
            if monitor is not None:
                monitor.record(None, None, time.perf_counter() - start)
            raise
        finally:
            if batcher is not None:
                batcher.coming -= 1
        if monitor is not None:
            monitor.record(answer["class"], answer["confidence"], time.perf_counter() - start)
        if keeper is not None:
            keeper.offer(data, answer["class"])
        metrics.predicted(answer["class"], answer["confidence"])
        return answer

    async def answer_image(data: bytes) -> dict:
        """The model's answer for an upload: micro-batched, or one call of its own; a failure that
        is not the upload's fault is a 500 in JSON, and the server goes on."""
        try:
            loaded, model_input = await run_in_threadpool(live.model_input, data, limits.max_pixels)
            if batcher is not None:
                return await batcher.submit(loaded, model_input)
            [answer] = await run_in_threadpool(answers, loaded, model_input[None])
            metrics.batch.observe(1)
            return answer
        except HTTPException:
            raise
        except Exception as err:  # noqa: BLE001 - one request's failure is a 500 in JSON, not a dead server
            print(f"serve: a prediction failed ({summary(err)})", file=sys.stderr, flush=True)
            raise HTTPException(500, f"the server failed on this image ({type(err).__name__}); it keeps serving. "
                                     "See the server's log.") from err

    @app.get("/metrics")
    def prometheus(request: Request) -> Response:
        authorise(request)
        metrics.serving(live.current.ref)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app
