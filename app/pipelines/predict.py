"""Classify images with a model from the registry (default: production).

    python app/pipelines/predict.py seven.png scan.jpg         # the one production model
    python app/pipelines/predict.py --dataset my-photos cat.jpg
    python app/pipelines/predict.py --model digits-cnn:v3 --json batch.npy
    python app/pipelines/predict.py photos/                     # every image in a folder

Image files of any size and mode (PNG, JPEG, anything Pillow reads), .npy arrays of uint8
images, or folders of them (sub-folders included), brought to the model's input by its own
recipe: its size (aspect kept, centre crop), channels and normalisation. For digit models a
light background is inverted, as they learned light strokes on dark.
"""
from __future__ import annotations

import json
import sys

from app import names
from app.cli import Parser
from app.errors import exits_cleanly


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="image files (.png, .jpg), .npy arrays of images, or folders of them")
    p.add_argument("--dataset", type=names.dataset_name, default=None,
                   help="picks the registry collection (default: the one with 'production')")
    p.add_argument("--arch", choices=names.ARCHITECTURES, default=None,
                   help="picks the registry collection (default: the one with 'production')")
    p.add_argument("--model", metavar="REF", help="model ref (default: wandb-registry-model/<dataset>-<arch>:production)")
    p.add_argument("--json", action="store_true", help="one JSON document, for machines")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="inference device")
    return p.parse_args(argv)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    from app.evaluation.images import model_inputs, read_inputs
    from app.evaluation.inference import probabilities
    from app.training.checkpoint import load_checkpoint
    from app.training.engine import pick_device
    from app.tracking import backend, discovery, start_run

    connected = backend()  # online: a bad key or no network is said first, in seconds
    inputs = read_inputs(args.inputs)  # a missing or broken file is refused before any run or lineage record
    model_ref = args.model or discovery.registry_model(connected, names.PRODUCTION, args.dataset, args.arch)
    # Prediction only reads: a read-only store serves its models (the use then goes unrecorded).
    with start_run("predict", {"model": model_ref, "inputs": len(inputs)}, writes=False) as run:
        device = pick_device(args.device)
        model_version = run.use(model_ref, names.MODEL_TYPE, lineage_optional=True)
        model, recipe = load_checkpoint(model_version.path, device)
        sources, images = model_inputs(inputs, recipe)
        probs = probabilities(model, images, device, recipe)

    classes = recipe["class_names"]
    results = [{"input": source, "class": classes[int(p.argmax())], "index": int(p.argmax()),
                "confidence": round(float(p.max()), 5)} for source, p in zip(sources, probs)]
    if args.json:
        print(json.dumps({"model": model_version.ref, "predictions": results}, indent=1))
        return
    for r in results:
        print(f"{r['input']}: {r['class']} ({r['confidence']:.3f})")
    print(f"model: {model_version.ref}", file=sys.stderr)


if __name__ == "__main__":
    main()
