"""Classify images with a model from the registry (default: production).

    python app/pipelines/predict.py seven.png scan.jpg         # the one production model
    python app/pipelines/predict.py --dataset my-photos cat.jpg
    python app/pipelines/predict.py --model digits-convnet:v3 --json batch.npy
    python app/pipelines/predict.py photos/ --output predictions.csv   # every image in a folder

Image files of any size and mode (PNG, JPEG, anything Pillow reads), .npy arrays of uint8
images, or folders of them (sub-folders included), brought to the model's input by its own
recipe: its size (aspect kept, centre crop), channels and normalisation. For digit models a
light background is inverted, as they learned light strokes on dark. The model version's ONNX
export runs them through onnxruntime where there is one (`registry.py export`, or evaluate.py
--promote); the run logs a `predictions` table (image, prediction, confidence, top 3).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from app import names, spreadsheet
from app.cli import Parser, add_model_flags, command, positive_int
from app.errors import UserError, exits_cleanly


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="image files (.png, .jpg), .npy arrays of images, or folders of them")
    add_model_flags(p, names.PRODUCTION)
    p.add_argument("--json", action="store_true", help="one JSON document, for machines")
    p.add_argument("--output", type=Path, metavar="CSV", help="also write the predictions to this CSV file")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per inference batch")
    p.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto",
                   help="auto: onnxruntime when the model version has an ONNX export (registry.py export) and "
                        "the device is the CPU, else torch")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="inference device (torch)")
    p.add_argument("--strict", action="store_true",
                   help="refuse when a file cannot be read (default: skip it, predict the others, list it at the end)")
    return p.parse_args(argv)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    from app.evaluation.images import model_inputs, read_inputs
    from app.serving.predictor import Predictor
    from app.training.engine import pick_device
    from app.tracking import backend, discovery, start_run

    connected = backend()  # online: a bad key or no network is said first, in seconds
    # A missing path is refused before any run or lineage record; an unreadable file too with
    # --strict, else passed over and listed at the end (as data_prep does in a folder).
    skipped = None if args.strict else []
    inputs = read_inputs(args.inputs, skipped)
    if not inputs:
        raise UserError(f"none of the {len(skipped)} file(s) given could be read: "
                        + "; ".join(reason for _, reason in skipped[:3]))
    model_ref = args.model or discovery.registry_model(connected, names.PRODUCTION, args.dataset, args.arch)
    # Prediction only reads: a read-only store serves its models (the use then goes unrecorded).
    with start_run("predict", {"model": model_ref, "inputs": len(inputs)}, writes=False) as run:
        device = pick_device(args.device)
        model_version = run.use(model_ref, names.MODEL_TYPE, lineage_optional=True)
        export = None
        if args.engine == "onnx" or (args.engine == "auto" and device.type == "cpu"):
            export = discovery.onnx_export(connected, model_version)
            if export is None and args.engine == "onnx":
                raise UserError(f"{model_version.ref} has no ONNX export; log one with "
                                f"`{command('registry')} export {model_version.ref}`, or pass --engine torch.")
        onnx_folder = run.use(export.ref, names.ONNX_TYPE, lineage_optional=True).path if export else None
        predictor = Predictor(model_version.path, onnx_folder, device=str(device))
        sources, images = model_inputs(inputs, predictor.recipe)
        probs = predictor.probabilities(images, args.batch_size)
        results = [{"input": source, "class": top[0][0], "index": int(p.argmax()), "confidence": top[0][1],
                    "top3": top} for source, p, top in zip(sources, probs, predictor.top(probs))]
        run.log({"predictions": run.table(
            ["image", "input", "prediction", "confidence", "top3"],
            [[run.image(image), r["input"], r["class"], r["confidence"], " | ".join(f"{c} {q:.3f}" for c, q in r["top3"])]
             for image, r in zip(images, results)])})

    if args.output:
        write_csv(args.output, results)
    engine = f"{predictor.engine}" + (f" ({export.ref})" if export else "")
    skipped = skipped or []
    if args.json:
        print(json.dumps({"model": model_version.ref, "engine": engine, "predictions": results,
                          "skipped": [{"input": name, "reason": reason} for name, reason in skipped]}, indent=1))
    else:
        for r in results:
            print(f"{r['input']}: {r['class']} ({r['confidence']:.3f})")
        print(f"model: {model_version.ref}, engine: {engine}" + (f", written to {args.output}" if args.output else ""),
              file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} file(s) that could not be read (--strict refuses them):", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason.split('; pass ')[0]}", file=sys.stderr)


def write_csv(path: Path, results: list[dict]) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = spreadsheet.writer(f)  # file and class names are the user's: no formula runs
            writer.writerow(["input", "class", "confidence", "top3"])
            writer.writerows([r["input"], r["class"], r["confidence"], " | ".join(f"{c} {q}" for c, q in r["top3"])]
                             for r in results)
    except OSError as err:
        raise UserError(f"could not write {path} ({err.strerror or err}); pass a writable --output path.") from err


if __name__ == "__main__":
    main()
