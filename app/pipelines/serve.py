"""Serve a registry model over HTTP (default: production), following the alias as it moves.

    python app/pipelines/serve.py                               # the one production model, port 8000
    curl -F file=@seven.png http://127.0.0.1:8000/predict       # {"class": "7", "confidence": ..., "top3": ...}
    python app/pipelines/serve.py --model wandb-registry-model/digits-convnet:candidate --port 9000

POST /predict takes an image of any size and mode as the form field `file`, brought to the
model's input by its recipe as predict.py does; GET /health names the version served. Every
--reload-every seconds the server checks where the ref points and loads the new version when
it moved (promotion in evaluate.py, registry.py alias, or the W&B UI). The model's ONNX export
runs through onnxruntime where there is one, else torch on the CPU.
"""
from __future__ import annotations

import sys

from app import names
from app.cli import Parser, add_model_flags, positive_int
from app.errors import exits_cleanly


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    add_model_flags(p, names.PRODUCTION)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--reload-every", type=float, default=30.0, metavar="SECONDS",
                   help="how often to check whether the ref moved to another version")
    p.add_argument("--max-upload-mb", type=positive_int, default=10, help="largest upload accepted, in MB")
    return p.parse_args(argv)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    import threading

    import uvicorn

    from app.serving.server import LiveModel, create_app, watch
    from app.tracking import backend, discovery

    connected = backend()
    ref = args.model or discovery.registry_model(connected, names.PRODUCTION, args.dataset, args.arch)
    live = LiveModel(connected, ref)
    stop = threading.Event()
    threading.Thread(target=watch, args=(live, args.reload_every, stop), daemon=True).start()
    print(f"serving {live.current.ref} ({live.current.predictor.engine}) for {ref} on "
          f"http://{args.host}:{args.port}  (POST /predict, GET /health)", file=sys.stderr, flush=True)
    try:
        uvicorn.run(create_app(live, args.max_upload_mb * 1024 * 1024), host=args.host, port=args.port,
                    log_level="warning")
    finally:
        stop.set()


if __name__ == "__main__":
    main()
