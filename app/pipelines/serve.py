"""Serve a registry model over HTTP (default: production), following the alias as it moves.

    python app/pipelines/serve.py                               # the one production model, port 8000
    curl -F file=@seven.png http://127.0.0.1:8000/predict       # {"class": "7", "confidence": ..., "top3": ...}
    python app/pipelines/serve.py --model wandb-registry-model/digits-convnet:candidate --port 9000

POST /predict takes an image of any size and mode as the form field `file`, brought to the
model's input by its recipe as predict.py does; GET /health names the version served (and the
one wanted, with the last reload error, when a new version failed to load); GET /metrics counts
requests, latencies and predicted classes for Prometheus. Uploads are bounded in bytes, pixels
and time (app/serving/server.py); with --api-key-env NAME, /predict and /metrics need the bearer
token held in that environment variable (never on the command line). Every
--reload-every seconds the server checks where the ref points and loads the new version when
it moved (promotion in evaluate.py, registry.py alias, or the W&B UI). The model's ONNX export
runs through onnxruntime where there is one, else torch on the CPU.
"""
from __future__ import annotations

import sys

from app import names
from app.cli import Parser, add_model_flags, non_negative_float, non_negative_int, positive_float, positive_int
from app.errors import UserError, exits_cleanly


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    add_model_flags(p, names.PRODUCTION)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--reload-every", type=positive_float, default=30.0, metavar="SECONDS",
                   help="how often to check whether the ref moved to another version (> 0)")
    p.add_argument("--max-upload-mb", type=positive_int, default=10, help="largest upload accepted, in MB")
    p.add_argument("--max-batch", type=positive_int, default=32, metavar="IMAGES",
                   help="images of concurrent requests answered by one model call (1: one call per request)")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=2.0, metavar="MS",
                   help="how long a batch waits for more images after its first one")
    p.add_argument("--max-pixels", type=positive_int, default=None, metavar="PIXELS",
                   help="largest image decoded, width x height, read from its header before decoding (default "
                        "40,000,000)")
    p.add_argument("--body-timeout", type=positive_float, default=30.0, metavar="SECONDS",
                   help="an upload that takes longer to arrive is cut off (408)")
    p.add_argument("--api-key-env", metavar="NAME", default=None,
                   help="require 'Authorization: Bearer <token>' on /predict and /metrics, the token read from the "
                        "environment variable NAME (or app/.env)")
    p.add_argument("--docs", action="store_true", help="serve FastAPI's /docs, /redoc and /openapi.json (off by default)")
    p.add_argument("--log-samples", type=non_negative_int, default=0, metavar="N",
                   help="keep a uniform sample of N served images and log it when the server stops as the "
                        "serving-samples dataset artifact, an image folder by predicted class (0: none)")
    p.add_argument("--log-every", type=positive_float, default=60.0, metavar="SECONDS",
                   help="how often the serve run logs the traffic: request rate, latency percentiles, predicted "
                        "classes, confidences and drift against the model's validation predictions")
    return p.parse_args(argv)


def api_key(name: str | None) -> str | None:
    """The bearer token from the environment variable `name` (app/.env read first)."""
    if name is None:
        return None
    import os

    from app.tracking.settings import load_env_file

    load_env_file()
    token = os.environ.get(name, "").strip()
    if not token:
        raise UserError(f"--api-key-env {name}: the environment variable {name} is not set (or empty); set it to the "
                        f"token clients must send (export {name}=..., or a line in app/.env).")
    return token


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    import threading

    import uvicorn

    from app.serving.monitor import Monitor, reference_for, report
    from app.serving.samples import SampleKeeper, log_samples
    from app.serving.server import DEFAULT_MAX_PIXELS, Limits, LiveModel, create_app, watch
    from app.tracking import backend, discovery, start_run

    limits = Limits(max_bytes=args.max_upload_mb * 1024 * 1024, max_batch=args.max_batch,
                    max_wait=args.max_wait_ms / 1000, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                    body_timeout=args.body_timeout, api_key=api_key(args.api_key_env), docs=args.docs)
    connected = backend()
    ref = args.model or discovery.registry_model(connected, names.PRODUCTION, args.dataset, args.arch)
    live = LiveModel(connected, ref)
    current = live.current
    reference = reference_for(connected, current.predictor.recipe, current.digest)
    monitor = Monitor(current.predictor.class_names, reference, current.ref)
    keeper = SampleKeeper(args.log_samples) if args.log_samples > 0 else None
    stop = threading.Event()
    threading.Thread(target=watch, args=(live, args.reload_every, stop), daemon=True).start()
    config = {"model": ref, "served": current.ref, "engine": current.predictor.engine, "max_batch": args.max_batch,
              "log_every": args.log_every, "drift_reference": reference.source if reference else None}
    with start_run("serve", config) as run:
        threading.Thread(target=report, args=(run, live, monitor, connected, args.log_every, stop), daemon=True).start()
        print(f"serving {current.ref} ({current.predictor.engine}) for {ref} on "
              f"http://{args.host}:{args.port}  (POST /predict, GET /health, GET /metrics"
              f"{', GET /docs' if args.docs else ''}{'; bearer token required' if limits.api_key else ''}); "
              f"traffic logged every {args.log_every:g} s, drift against "
              f"{reference.source if reference else 'nothing (the model has no evaluation: run evaluate.py)'}",
              file=sys.stderr, flush=True)
        try:
            uvicorn.run(create_app(live, limits, monitor, keeper), host=args.host, port=args.port,
                        log_level="warning")
        finally:
            stop.set()
        if keeper is not None:  # after a clean stop (Ctrl-C, SIGTERM); a killed server keeps nothing
            logged = log_samples(run, keeper, live.current.ref)
            print(f"serving samples: {logged} ({len(keeper.kept)} of {keeper.seen} images served)" if logged else
                  "serving samples: none (nothing was served)", file=sys.stderr)


if __name__ == "__main__":
    main()
