"""The model card (`model_card.md`): Markdown in the sections of Hugging Face's model cards,
filled from what each step knows.

train.py writes `training_card` into the model artifact; evaluate.py completes it
(`evaluated_card`: metrics per split, per class, the confusion matrices, the gate's decision) in
its evaluation artifact and as the version's description; `registry.py card REF` prints it.

The model artifact's card holds only what its files determine (the recipe, the data, the epochs
and metrics of its weights, the device kind), so training the same model again still writes the
same files and gets the same version (W&B's digest dedup); what differs from run to run (the run,
its duration) is in the model's metadata, and the evaluated card shows it.
"""
from __future__ import annotations

import re
from pathlib import Path

from app.recipe import Recipe

CARD_FILE = "model_card.md"
CONFUSION_FILES = {"val": "confusion_val.png", "test": "confusion_test.png"}
EVALUATION_HEADING = "## Evaluation"
LOWEST_F1 = 3  # classes named as the weakest


def training_card(recipe: Recipe, metadata: dict, dataset: dict, collection: str) -> str:
    """The card train.py writes: `metadata` is the model artifact's (workflow.train_and_log),
    `dataset` the dataset artifact's (data_prep)."""
    spec, config, metrics = recipe.input, recipe.config, metadata.get("metrics") or {}
    classes = list(recipe.class_names)
    kind = "colour" if spec.channels == 3 else "greyscale" if spec.channels == 1 else f"{spec.channels}-channel"
    trained_on = metadata.get("trained_on") or {}
    sections = [
        _front_matter(recipe),
        f"# {collection}: model card\n\n"
        f"An image classifier ({recipe.arch}, {metadata.get('parameters', 0):,} weights) that tells "
        f"{len(classes)} classes of {kind} {spec.size[0]}x{spec.size[1]} images apart, trained by this pipeline's "
        f"train.py on `{recipe.dataset.ref}`.",
        "## Model details\n\n" + _table(["property", "value"], [
            ["architecture", f"`{recipe.arch}` (app/models/)"],
            ["weights", f"{metadata.get('parameters', 0):,} parameters: `model.pt`, a state_dict rebuilt from `recipe.json`"],
            ["classes", f"{len(classes)}: {', '.join(f'`{c}`' for c in classes[:50])}"
                        + (f" and {len(classes) - 50} more" if len(classes) > 50 else "")],
            ["code version", f"`{metadata.get('code_version') or 'not a git checkout'}`"],
        ]),
        "## Intended use\n\n"
        f"Sorting {kind} images like those of `{recipe.dataset.name}` into one of its {len(classes)} classes "
        "(`predict.py`, `serve.py`, or the ONNX export). Out of scope: images of other kinds or classes. The model "
        f"always answers one of its {len(classes)} classes, whatever it is shown: watch the confidence, and serve.py's "
        "drift scores, before trusting its answers on new data." + _few_to_judge(dataset, len(classes)),
        "## Training data\n\n" + _training_data(recipe, dataset),
        "## Training procedure\n\n" + _table(["hyperparameter", "value"],
                                             [[k, f"`{v}`"] for k, v in config.hyperparameters().items()]) + "\n\n"
        + "\n".join(f"- {line}" for line in [
            f"epochs: {metrics.get('epochs_trained', config.epochs)} of {config.epochs}; the weights are those of epoch "
            f"{metrics.get('best_epoch', '?')}, the best by validation accuracy "
            f"({_number(metrics.get('val_accuracy'))}, validation loss {_number(metrics.get('val_loss'))}; training "
            f"accuracy {_number(metrics.get('train_accuracy'))})",
            f"device: {trained_on.get('device', '?')}, precision {trained_on.get('precision', '?')}, "
            f"{metadata.get('world_size', 1)} process(es)"
            + (", torch.compile" if trained_on.get("compile") else ""),
            *([f"sweep `{metadata['sweep']['sweep_id']}`, trial {metadata['sweep']['trial']}"]
              if metadata.get("sweep") else []),
            *([f"retrained from `{metadata['retrained_from']}`"
               + (" (starting from its weights)" if metadata.get("warm_start") else " (from scratch, its recipe locked)")]
              if metadata.get("retrained_from") else []),
        ]),
        "## Input and output\n\n" + _input_output(recipe, collection),
        f"{EVALUATION_HEADING}\n\nNot evaluated yet: `python app/pipelines/evaluate.py --model REF` completes this "
        "card with validation and test metrics.",
    ]
    return "\n\n".join(sections) + "\n"


def evaluated_card(card: str, evaluation: dict, model_metadata: dict) -> str:
    """`card` (the model's own) with its Evaluation section written from `evaluation`: evaluate.py's
    {"run", "dataset", "own_data", "results" {split: metrics}, "class_names", "gate" (the decision, a
    sentence)}; the training run's duration and id from `model_metadata`."""
    results, classes = evaluation["results"], evaluation["class_names"]
    rows = [[split, _number(r["accuracy"]), _number(r["macro_f1"]), _number(r["loss"]), _number(r["ece"])]
            for split, r in results.items()]
    test = results["test"]
    per_class = test["per_class"]
    counts = [sum(row) for row in test["confusion_matrix"]]
    weakest = sorted(range(len(classes)), key=lambda i: (per_class["f1"][i], i))[:LOWEST_F1]
    gap = results["val"]["accuracy"] - results["test"]["accuracy"]
    data_note = ("the model's own dataset version" if evaluation["own_data"]
                 else "another dataset version than the model's own: the gate does not promote on it")
    section = [
        f"{EVALUATION_HEADING}\n\nEvaluated by run `{evaluation['run']}` on `{evaluation['dataset']}` ({data_note}); "
        "the validation split chose the kept epoch, the test split was seen by no step before.",
        _table(["split", "accuracy", "macro F1", "loss", "expected calibration error"], rows),
        f"Validation-test gap: {gap:+.4f} (validation minus test accuracy)"
        + (": larger than 2 points, so the validation figure flatters the model." if abs(gap) > 0.02 else "."),
        "### Per class (test)\n\n" + _table(
            ["class", "precision", "recall", "F1", "test images"],
            [[f"`{c}`", *(_number(per_class[k][i]) for k in ("precision", "recall", "f1")), str(counts[i])]
             for i, c in enumerate(classes)]),
        "Lowest F1 on test: " + ", ".join(f"`{classes[i]}` {_number(per_class['f1'][i])}" for i in weakest) + ".",
        "### Confusion matrices\n\n" + "\n\n".join(
            f"![{name} confusion matrix]({file})" for name, file in CONFUSION_FILES.items()),
        f"### Promotion gate\n\n{evaluation['gate'][:1].upper()}{evaluation['gate'][1:]}",
        "### Training run\n\n" + _training_run(model_metadata),
    ]
    before = card.split(EVALUATION_HEADING)[0].rstrip()
    return before + "\n\n" + "\n\n".join(section) + "\n"


def own_card(model_folder: Path, recipe: Recipe, metadata: dict, dataset: dict, collection: str) -> str:
    """A model version's own card: its model_card.md, or for a model logged before cards, one
    written now from its recipe and metadata."""
    path = model_folder / CARD_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return training_card(recipe, metadata, dataset, collection)


def is_evaluated(card: str | None) -> bool:
    """Whether a card's Evaluation section was written by evaluate.py."""
    return bool(card) and sections(card).get(EVALUATION_HEADING[3:], "").startswith("Evaluated by run")


def sections(card: str) -> dict[str, str]:
    """{heading: its text} of a card's `##` sections (what a test or a reader checks)."""
    parts = re.split(r"^## (.+)$", card, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


# -- the parts ------------------------------------------------------------------------------------

def _front_matter(recipe: Recipe) -> str:
    """Hugging Face's card metadata block."""
    return ("---\nlibrary_name: pytorch\npipeline_tag: image-classification\n"
            f"tags:\n- image-classification\n- wandb-image-pipeline\n- {recipe.arch}\n"
            f"datasets:\n- {recipe.dataset.ref}\n---")


def _training_data(recipe: Recipe, dataset: dict) -> str:
    spec = recipe.input
    sizes = dataset.get("split_sizes") or {}
    lines = [
        f"dataset `{recipe.dataset.ref}` (digest `{recipe.dataset.digest}`)"
        + (f", from {dataset['source']}" if dataset.get("source") else ""),
        "split sizes: " + (", ".join(f"{s} {sizes[s]:,}" for s in ("train", "val", "test") if s in sizes)
                           or "not recorded"),
        f"image size: {spec.size[0]}x{spec.size[1]} pixels (height x width), {spec.channels} channel(s)"
        + (f"; other sizes {spec.resize}" if spec.resize else "; all images had it"),
        "normalisation: " + (f"per channel, mean {list(spec.mean)} and std {list(spec.std)} of the training split"
                             if spec.normalises else "none (pixels in [0, 1])")
        + (f"; inside the model, the pretrained weights' own ({spec.model_input.get('weights')}, "
           f"{spec.model_input.get('size')} px)" if spec.model_input else ""),
    ]
    text = "\n".join(f"- {line}" for line in lines)
    counts = dataset.get("class_counts")
    if counts:
        splits = [s for s in ("train", "val", "test") if s in counts]
        text += "\n\n" + _table(["class", *splits], [[f"`{c}`", *(str(counts[s][i]) for s in splits)]
                                                     for i, c in enumerate(recipe.class_names)])
        ratio = (dataset.get("class_balance") or {}).get("imbalance_ratio")
        if ratio:
            text += f"\n\nImbalance ratio (largest class / smallest): {ratio}."
    return text


def _few_to_judge(dataset: dict, classes: int) -> str:
    few = (dataset.get("class_balance") or {}).get("few_to_judge") or {}
    if not few:
        return ""
    which = "every class has" if len(few) == classes else ", ".join(f"`{c}`" for c in few) + " have"
    return (f" Limitation: {which} so few validation or test images that one image moves its accuracy by more than "
            "10 points: the per-class figures are rough.")


def _input_output(recipe: Recipe, collection: str) -> str:
    spec = recipe.input
    shape = "[" + ", ".join(map(str, ["batch", *spec.size, *([spec.channels] if spec.channels != 1 else [])])) + "]"
    return "\n".join(f"- {line}" for line in [
        f"ONNX export (`{collection}-onnx`, made when evaluate.py promotes or by `registry.py export`): input "
        f"`images`, uint8, shape {shape}, pixels as stored (0-255, {spec.size[0]}x{spec.size[1]}); the normalisation "
        "is inside the graph",
        f"output `probabilities`: float32, shape [batch, {recipe.num_classes}], softmax, in the class order above",
        "other sizes and formats: `predict.py FILES` and `serve.py` bring any image to this input "
        + (f"({spec.resize})" if spec.resize else "(scaled to cover, centre cropped)")
        + ("; a light background is inverted, as on a scan of dark strokes" if spec.invert_light_background else ""),
    ])


def _training_run(metadata: dict) -> str:
    seconds = metadata.get("training_seconds")
    trained_on = metadata.get("trained_on") or {}
    logger = (metadata.get("run") or {})
    return (f"Trained by run `{logger.get('id', '?')}` ({logger.get('job_type', '?')}) in "
            + (f"{seconds:,.0f} s" if seconds is not None else "a time not recorded")
            + f" on {trained_on.get('device', '?')}.")


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"
