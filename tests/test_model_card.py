"""The model card (#38): train.py writes it into the model artifact, evaluate.py completes it in its
evaluation artifact and as the version's description, `registry.py card REF` prints it; every
section holds the facts of the runs that produced it, on digits and on a colour folder."""
from __future__ import annotations

import sys
from pathlib import Path


from app.model_card import CARD_FILE, CONFUSION_FILES, is_evaluated, sections

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
from make_shapes import write_shapes  # noqa: E402

SECTIONS = ["Model details", "Intended use", "Training data", "Training procedure", "Input and output", "Evaluation"]


def stored_files(ws, version: dict) -> Path:
    return ws.store / "objects" / version["digest"]


def check_card(ws, card: str, model: dict, dataset: dict, evaluation: dict) -> None:
    """Each section against the metadata of the runs that made the model, its data and its evaluation."""
    found = sections(card)
    assert list(found) == SECTIONS, list(found)
    assert all(found[s] for s in SECTIONS) and "Not evaluated yet" not in card
    meta, data = model["metadata"], dataset["metadata"]
    classes = data["class_names"]
    details, use = found["Model details"], found["Intended use"]
    assert f"`{meta['arch']}`" in details and f"{meta['parameters']:,} parameters" in details
    assert all(f"`{c}`" in details for c in classes) and meta["code_version"] in details
    assert f"into one of its {len(classes)} classes" in use
    training_data = found["Training data"]
    assert f"`{dataset['ref']}` (digest `{dataset['digest']}`)" in training_data
    sizes = data["split_sizes"]
    assert f"split sizes: train {sizes['train']:,}, val {sizes['val']:,}, test {sizes['test']:,}" in training_data
    height, width = data["image_size"]
    assert f"image size: {height}x{width} pixels" in training_data and f"{data['channels']} channel(s)" in training_data
    assert f"mean {data['mean']}" in training_data and f"std {data['std']}" in training_data
    for i, name in enumerate(classes):  # each class's counts, split by split
        counts = " | ".join(str(data["class_counts"][s][i]) for s in ("train", "val", "test"))
        assert f"| `{name}` | {counts} |" in training_data
    procedure = found["Training procedure"]
    for key, value in meta["hyperparameters"].items():
        assert f"| {key} | `{value}` |" in procedure
    metrics = meta["metrics"]
    assert f"epochs: {metrics['epochs_trained']} of {meta['epochs']}" in procedure
    assert f"those of epoch {metrics['best_epoch']}" in procedure and f"({metrics['val_accuracy']:.4f}" in procedure
    assert f"device: {meta['trained_on']['device']}, precision {meta['trained_on']['precision']}" in procedure
    io = found["Input and output"]
    shape = [height, width] + ([data["channels"]] if data["channels"] != 1 else [])
    assert f"shape [batch, {', '.join(map(str, shape))}]" in io and f"[batch, {len(classes)}]" in io

    result = found["Evaluation"]
    eval_meta = evaluation["metadata"]["metrics"]
    assert f"on `{dataset['ref']}` (the model's own dataset version)" in result
    for split in ("val", "test"):
        row = (f"| {split} | {eval_meta[f'{split}_accuracy']:.4f} | {eval_meta[f'{split}_macro_f1']:.4f} | "
               f"{eval_meta[f'{split}_loss']:.4f} | {eval_meta[f'{split}_ece']:.4f} |")
        assert row in result
    assert f"Validation-test gap: {eval_meta['val_test_gap']:+.4f}" in result
    f1 = evaluation["metadata"]["per_class"]["test"]["f1"]
    weakest = sorted(range(len(classes)), key=lambda i: (f1[i], i))[:3]
    assert "Lowest F1 on test: " + ", ".join(f"`{classes[i]}` {f1[i]:.4f}" for i in weakest) in result
    for file in CONFUSION_FILES.values():  # the images the card shows, beside it in the evaluation artifact
        assert f"]({file})" in result and (stored_files(ws, evaluation) / file).read_bytes()[:4] == b"\x89PNG"
    assert evaluation["metadata"]["promotion"]["reason"] in result
    assert f"Trained by run `{meta['run']['id']}` (train) in {meta['training_seconds']:,.0f} s" in result


def flow(ws, name: str, *data_prep_args) -> tuple[str, dict, dict, dict]:
    ws.run("data_prep", *data_prep_args)
    ws.run("train", "--epochs", "2", "--width", "8")
    [dataset] = ws.versions(f"{name}-split")
    collection = f"{name}-convnet"
    [model] = ws.versions(collection)
    written = (stored_files(ws, model) / CARD_FILE).read_text()
    assert sections(written)["Evaluation"].startswith("Not evaluated yet")  # train.py's, in the model artifact
    ws.run("registry", "link", f"{collection}:v0", collection, "--alias", "to_evaluate")
    out = ws.run("evaluate", "--promote", "--no-generate-images").stdout
    assert "promotion: promoted" in out
    [evaluation] = ws.versions(f"{collection}-evaluation")
    card = ws.run("registry", "card", f"wandb-registry-model/{collection}:production").stdout
    assert (stored_files(ws, evaluation) / CARD_FILE).read_text().split("### Promotion gate")[0] == \
        card.split("### Promotion gate")[0]  # the evaluation artifact holds the same card
    assert "promoted to production." in card
    return card, model, dataset, evaluation


def test_the_card_of_a_digits_model_is_filled_from_its_runs(workspace):
    card, model, dataset, evaluation = flow(workspace, "digits", "--dataset", "digits", "--fraction", "40")
    check_card(workspace, card, model, dataset, evaluation)
    assert "a light background is inverted" in sections(card)["Input and output"]


def test_the_card_of_a_colour_folder_model_is_filled_from_its_runs(workspace, tmp_path):
    write_shapes(tmp_path / "pics", per_class=16, seed=3)
    card, model, dataset, evaluation = flow(workspace, "pics", "--dataset", "imagefolder", "--data-dir",
                                            str(tmp_path / "pics"), "--image-size", "24")
    check_card(workspace, card, model, dataset, evaluation)
    assert "colour 24x24 images" in card and "centre cropped" in sections(card)["Training data"]


def test_the_model_artifacts_card_holds_nothing_that_differs_between_identical_trainings():
    """So training the same model again writes the same files: the same version (W&B's dedup)."""
    from app.model_card import training_card
    from app.recipe import DatasetRef, InputSpec, Recipe
    from app.recipe.config import TrainConfig

    recipe = Recipe(TrainConfig(epochs=3), InputSpec.plain([1, 8, 8]), ("a", "b"), DatasetRef("d:v0", "x", "d"))
    metadata = {"parameters": 10, "metrics": {"best_epoch": 2, "epochs_trained": 3, "val_accuracy": 0.5},
                "trained_on": {"device": "cpu", "precision": "fp32"}, "code_version": "abc"}
    one = training_card(recipe, {**metadata, "training_seconds": 3.0, "run": {"id": "r1"}}, {}, "d-convnet")
    other = training_card(recipe, {**metadata, "training_seconds": 9.0, "run": {"id": "r2"}}, {}, "d-convnet")
    assert one == other and not is_evaluated(one)
    trial = training_card(recipe, {**metadata, "sweep": {"sweep_id": "s7", "trial": 4}}, {}, "d-convnet")
    assert "- sweep `s7`, trial 4" in sections(trial)["Training procedure"]
    retrained = training_card(recipe, {**metadata, "retrained_from": "wandb-registry-model/d-convnet:v2",
                                       "warm_start": False}, {}, "d-convnet")
    assert "- retrained from `wandb-registry-model/d-convnet:v2` (from scratch, its recipe locked)" in retrained


def test_a_model_logged_before_cards_gets_one_from_its_recipe(tmp_path):
    """A version without model_card.md (every model logged before cards): `registry.py card` and
    evaluate.py write its card from its recipe and metadata, with the same sections."""
    from app.model_card import own_card
    from app.models import build_model
    from app.models.files import save_model
    from app.recipe import DatasetRef, InputSpec, Recipe
    from app.recipe.config import TrainConfig

    recipe = Recipe(TrainConfig(arch="mlp", epochs=3, hidden=8), InputSpec.plain([1, 8, 8]), ("a", "b"),
                    DatasetRef("d-split:v0", "x", "d"))
    save_model(build_model(recipe), recipe, tmp_path)
    card = own_card(tmp_path, recipe, {"parameters": 530, "metrics": {"best_epoch": 2, "epochs_trained": 3}}, {},
                    "d-mlp")
    assert list(sections(card)) == SECTIONS and "`d-split:v0`" in card and "epochs: 3 of 3" in card
    (tmp_path / CARD_FILE).write_text("# written by train.py\n")
    assert own_card(tmp_path, recipe, {}, {}, "d-mlp") == "# written by train.py\n"
