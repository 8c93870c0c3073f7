"""Models and the training engine on small data, without W&B."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.errors import UserError
from app.models import build, build_model
from app.training import engine
from app.models.files import load_model, save_model
from app.recipe.config import TrainConfig, from_flags, hyperparameter_names, model_defaults
from app.training.optimizer import lr_factor, make_optimizer
from conftest import recipe_of


def recipe_for(arch, **over):
    return recipe_of(from_flags(arch, 5, over), [1, 28, 28], [str(i) for i in range(10)],
                       {"ref": "x-split:v0", "digest": "d", "name": "digits"})


@pytest.mark.parametrize("arch, params", [("convnet", 297_450), ("cnn", 454_922), ("mlp", 669_706)])
def test_models_map_28x28_to_ten_logits(arch, params):
    model = build_model(recipe_for(arch))
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert sum(p.numel() for p in model.parameters()) == params


def test_cnn_matches_the_original_layout():
    model = build_model(recipe_for("cnn", dense=256))
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (5, 5))]
    dense = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert dense[0].in_features == 7 * 7 * 64 and dense[0].out_features == 256
    assert [m.p for m in model if isinstance(m, torch.nn.Dropout)] == [0.25, 0.25, 0.5]


@pytest.mark.parametrize("shape", [[1, 1, 1], [1, 7, 5], [3, 200, 160], [4, 28, 28]])
def test_the_convnet_takes_any_image_size_with_a_classifier_of_the_same_size(shape):
    model = build("convnet", shape, 10, recipe_for("convnet").config.model)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    # only the stem's weights depend on the input (its channels); the image size changes nothing
    assert sum(p.numel() for p in model.parameters()) == 297_450 + 32 * 9 * (shape[0] - 1)
    assert [type(m).__name__ for m in model.modules()].count("BatchNorm2d") == 7


def test_the_convnet_trains_in_channels_last_on_the_cpu_and_the_cnn_does_not():
    from app.recipe.config import DeviceOptions

    cpu = torch.device("cpu")
    assert engine.accelerate(DeviceOptions(), cpu, build_model(recipe_for("convnet"))).channels_last
    assert not engine.accelerate(DeviceOptions(), cpu, build_model(recipe_for("cnn"))).channels_last
    assert not engine.accelerate(DeviceOptions(), cpu, build_model(recipe_for("mlp"))).channels_last


def test_the_default_length_is_a_step_budget_chosen_from_the_training_split():
    from app.recipe.config import MAX_EPOCHS, MIN_EPOCHS, STEP_BUDGET, epochs_for_budget, with_dataset_defaults

    assert TrainConfig().epochs is None and TrainConfig().arch == "convnet" and TrainConfig().schedule == "cosine"
    assert epochs_for_budget(1257, 64) == 10  # digits: 20 steps per epoch
    assert epochs_for_budget(840, 64) == 15  # 1,200 colour images at 70%: 14 steps
    assert epochs_for_budget(1257, 64, world_size=2) == 20  # 10 steps per epoch and process
    assert epochs_for_budget(60_000, 64) == MIN_EPOCHS and epochs_for_budget(10, 64) == MAX_EPOCHS
    for size in (100, 840, 4900, 20_000):
        epochs = epochs_for_budget(size, 32)
        steps = epochs * -(-size // 32)
        assert epochs in (MIN_EPOCHS, MAX_EPOCHS) or STEP_BUDGET <= steps < STEP_BUDGET + -(-size // 32)
    # an augmented split: eight times the steps (60 epochs of 27 at batch 32), unless the flag turns it off
    assert epochs_for_budget(840, 32, augment="crop-flip") == 60 == epochs_for_budget(840, 32, augment="crop")
    settled = with_dataset_defaults(from_flags("convnet", None, {"batch_size": 32}),
                                    {"split_sizes": {"train": 840}, "augment": "crop"})
    assert (settled.epochs, settled.augment) == (60, "crop")
    plain = with_dataset_defaults(from_flags("convnet", None, {"augment": "none"}),
                                  {"split_sizes": {"train": 840}, "augment": "crop-flip"})
    assert (plain.epochs, plain.augment) == (15, "none")
    assert with_dataset_defaults(from_flags("convnet", 4, {}), {"split_sizes": {"train": 840}}).epochs == 4
    assert with_dataset_defaults(from_flags("convnet", None, {}), {}).epochs == 5  # a dataset that does not say


def test_the_convnet_takes_its_colour_defaults_on_an_augmented_split_unless_a_flag_or_a_locked_recipe_says():
    """#34: on an augmented split, the hyperparameters no flag gave take the convnet's `augmented`
    defaults (measured in docs/performance.md); a plain split, another architecture, a flag and a
    locked recipe (--retrain's: nothing unset) keep their values."""
    import argparse

    from app.recipe.config import add_flags, epochs_for_budget, retrain_epochs, unset_flags, with_dataset_defaults

    colour = {"split_sizes": {"train": 840}, "augment": "crop-flip"}
    nothing_given = {name: None for name in hyperparameter_names()}
    settled = with_dataset_defaults(from_flags("convnet", None, {}), colour, unset=unset_flags(nothing_given))
    assert (settled.lr, settled.batch_size, settled.weight_decay, settled.label_smoothing) == (0.0052, 32, 0.0027, 0.1)
    assert (settled.warmup, settled.schedule, settled.width, settled.augment) == (0.05, "cosine", 32, "crop-flip")
    assert settled.epochs == epochs_for_budget(840, 32, augment="crop-flip")  # the budget at its own batch size

    given = {**nothing_given, "lr": 0.002}
    flagged = with_dataset_defaults(from_flags("convnet", None, given), colour, unset=unset_flags(given))
    assert (flagged.lr, flagged.batch_size) == (0.002, 32)
    for arch, data, unset in (("convnet", {"split_sizes": {"train": 840}, "augment": "none"}, unset_flags({})),
                              ("mlp", colour, unset_flags({})),  # measured on the convnet only
                              ("convnet", colour, ())):  # a locked recipe
        kept = with_dataset_defaults(from_flags(arch, None, {}), data, unset=unset)
        assert (kept.lr, kept.batch_size, kept.weight_decay, kept.label_smoothing) == (0.001, 64, 0.0001, 0.0)
    assert retrain_epochs(TrainConfig(epochs=20, batch_size=64), colour) == epochs_for_budget(840, 64, augment="crop")
    parser = argparse.ArgumentParser()
    add_flags(parser)  # train.py's flags: --help names both defaults
    assert "(default 0.001; convnet on an augmented split: 0.0052)" in " ".join(parser.format_help().split())


def separable(n=600, seed=0):
    """Ten classes, each a bright square in its own place: trivially learnable."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 5)
        images[i, 4 + r * 12:10 + r * 12, 2 + c * 5:6 + c * 5] = 255
    return images, labels


def fit_once(arch="cnn", epochs=3, seed=0):
    engine.seed_everything(seed)
    model = engine.prepare(build_model(recipe_for(arch)), torch.device("cpu"))
    x, y = separable()
    train = engine.to_tensors(x[:500], y[:500], torch.device("cpu"))
    val = engine.to_tensors(x[500:], y[500:], torch.device("cpu"))
    history = engine.fit(model, train, val, TrainConfig(lr=1e-3, batch_size=32, epochs=epochs, seed=seed),
                         progress=False)
    return model, history


@pytest.mark.parametrize("arch", ["convnet", "cnn", "mlp"])
def test_engine_learns_a_separable_task(arch):
    _, history = fit_once(arch)
    assert history[-1]["val/accuracy"] >= 0.95
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert set(history[0]) >= {"epoch", "train/loss", "train/accuracy", "val/loss", "val/accuracy"}


def test_same_seed_gives_identical_weights_on_cpu():
    a, _ = fit_once(epochs=1, seed=7)
    b, _ = fit_once(epochs=1, seed=7)
    c, _ = fit_once(epochs=1, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_callback_can_stop_training_early():
    model = engine.prepare(build_model(recipe_for("mlp")), torch.device("cpu"))
    x, y = separable(100)
    data = engine.to_tensors(x, y, torch.device("cpu"))
    history = engine.fit(model, data, data, TrainConfig(lr=1e-3, batch_size=32, epochs=5, seed=0),
                         on_epoch=lambda r: r["epoch"] == 2, progress=False)
    assert len(history) == 2


def test_nan_loss_stops_with_a_clear_message():
    model = engine.prepare(build_model(recipe_for("mlp")), torch.device("cpu"))
    x, y = separable(100)
    data = engine.to_tensors(x, y, torch.device("cpu"))
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    with pytest.raises(engine.NonFiniteLoss, match="learning rate"):
        engine.fit(model, data, data, TrainConfig(lr=1e-3, batch_size=32, epochs=2, seed=0), progress=False)


def test_checkpoint_round_trips_the_recipe_and_weights(tmp_path):
    model, _ = fit_once("mlp", epochs=1)
    recipe = recipe_for("mlp")
    save_model(model, recipe, tmp_path)
    loaded, back = load_model(tmp_path)
    assert back == recipe
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in model.state_dict())


def test_a_pickled_payload_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    save_model(build_model(recipe_for("mlp")), recipe_for("mlp"), tmp_path)
    torch.save({"weights": Evil()}, tmp_path / "model.pt")
    with pytest.raises(UserError, match="refused to load"):
        load_model(tmp_path)


def test_unknown_architecture_and_locked_hyperparameters():
    with pytest.raises(UserError, match="unknown architecture .vgg."):
        build("vgg", [1, 28, 28], 10, {})
    recipe = recipe_for("cnn")
    recipe.check_locked({"lr": recipe.config.lr, "seed": None})
    with pytest.raises(UserError, match="lr"):
        recipe.check_locked({"lr": 0.5})
    with pytest.raises(UserError, match="hidden"):
        from_flags("cnn", 5, {"hidden": 3})
    assert model_defaults("mlp") == {"hidden": 512}


def test_adamw_decays_weights_not_biases_and_is_fused_where_offered():
    model = build_model(recipe_for("mlp"))
    optimizer = make_optimizer(model, 1e-3, weight_decay=0.05)
    assert isinstance(optimizer, torch.optim.AdamW)
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    for p in model.parameters():
        assert decays[id(p)] == (0.05 if p.dim() > 1 else 0.0)
    assert all(g["fused"] for g in optimizer.param_groups)  # torch has the fused kernel on the CPU


def test_schedule_warms_up_then_decays_to_zero_and_reaches_the_optimizer(monkeypatch):
    """engine.fit steps the learning rate the recipe asks for: recorded at every optimizer step."""
    seen = []

    def recording(model, lr, weight_decay=0.0, backbone=None):
        optimizer = make_optimizer(model, lr, weight_decay, backbone)
        optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"])))
        return optimizer

    monkeypatch.setattr(engine, "make_optimizer", recording)
    x, y = separable(320)
    data = engine.to_tensors(x, y, torch.device("cpu"))
    engine.fit(build_model(recipe_for("mlp")), data, data, TrainConfig(lr=0.01, batch_size=32, epochs=2, seed=0, warmup=0.25, schedule="cosine", weight_decay=0.03),
               progress=False)
    lrs = [lr for lr, _ in seen]
    assert len(lrs) == 20 and all(wd == 0.03 for _, wd in seen)
    assert lrs[:5] == pytest.approx([0.002, 0.004, 0.006, 0.008, 0.01])  # linear warm-up over 5 of 20 steps
    assert lrs[5] == pytest.approx(0.01) and all(a > b for a, b in zip(lrs[5:], lrs[6:]))  # cosine down
    assert lrs[-1] < 0.001 and lr_factor(20, 20, 0.25, "cosine") == pytest.approx(0.0)
    assert lr_factor(10, 20, 0.25, "constant") == 1.0


def test_config_round_trips_through_the_model_artifact_and_rebuilds_the_same_model(tmp_path):
    config = TrainConfig(arch="cnn", epochs=7, lr=0.002, batch_size=32, weight_decay=0.01, warmup=0.1,
                         schedule="constant", label_smoothing=0.1, augment="crop", seed=5,
                         dropout_1=0.1, dropout_2=0.2, dropout_3=0.3, dense=64)
    recipe = recipe_of(config, [1, 28, 28], [str(i) for i in range(10)], {"ref": "x:v0", "digest": "d", "name": "x"})
    torch.manual_seed(0)
    model = build_model(recipe).eval()
    save_model(model, recipe, tmp_path)
    loaded, loaded_recipe = load_model(tmp_path)
    assert loaded_recipe.config == config
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


def test_train_py_has_a_flag_for_every_training_field_with_its_default_in_the_help(capsys):
    from dataclasses import fields

    from app.pipelines.train import parse_args

    args = parse_args([])
    assert {k: getattr(args, k) for k in hyperparameter_names()} == dict.fromkeys(hyperparameter_names())
    args = parse_args(["--lr", "0.01", "--schedule", "cosine", "--batch-size", "32", "--augment", "crop"])
    assert (args.lr, args.schedule, args.batch_size, args.augment) == (0.01, "cosine", 32, "crop")
    for bad in (["--batch_size", "0"], ["--schedule", "linear"], ["--warmup", "x"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    text = " ".join(out.split("options:")[1].split())  # the list, not the usage line
    import re

    listed = re.findall(r"^  (--[\w-]+)", out, re.M)  # each option line's first flag
    for f in fields(TrainConfig):
        if f.name in hyperparameter_names():  # every one, the architectures' own included, shown once
            assert listed.count(f"--{f.name.replace('_', '-')}") == 1 and ("_" not in f.name or f"--{f.name}" not in listed), f.name
            assert " ".join(f.metadata["help"].split()) in text
            if f.default is not None:
                augmented = f.metadata["augmented"]
                assert (f"(default {f.default})" if augmented is None else
                        f"(default {f.default}; convnet on an augmented split: {augmented})") in text


def test_recipes_from_before_a_key_train_as_they_did():
    from app.recipe import Recipe

    recipe = recipe_for("mlp").to_dict()
    recipe["format"] = 1  # the layout that had no every-key rule
    recipe["input_shape"], recipe["num_classes"] = [1, 28, 28], 10
    for key in ("weight_decay", "warmup", "schedule", "label_smoothing", "augment"):
        del recipe["hyperparameters"][key]
    old = Recipe.from_dict(recipe).config
    assert (old.weight_decay, old.warmup, old.schedule, old.label_smoothing, old.augment) == (0.0, 0.0, "constant", 0.0, "none")


def test_app_calls_no_private_torch_api():
    """No `torch._*` attribute or module anywhere in app/ (public, documented APIs only)."""
    import ast
    from pathlib import Path

    offenders = []
    for path in Path(engine.__file__).parents[1].rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id == "torch":
                    offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch._"):
                offenders.append(f"{path.name}:{node.lineno} from {node.module}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
                # `from torch.nn.modules.utils import _pair`: a public module's private name
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    offenders.append(f"{path.name}:{node.lineno} from {node.module} import {', '.join(private)}")
            if isinstance(node, ast.Import) and any(a.name.startswith("torch._") for a in node.names):
                offenders.append(f"{path.name}:{node.lineno} import")
    assert offenders == []


def test_the_config_is_settled_before_the_run_logs_it_and_never_changed_after(workspace):
    from dataclasses import FrozenInstanceError

    from app.recipe.config import with_dataset_defaults
    from conftest import leet_records

    config = from_flags("mlp", 1, {})
    with pytest.raises(FrozenInstanceError):
        config.augment = "crop"
    assert with_dataset_defaults(config, {"augment": "crop-flip"}).augment == "crop-flip"
    assert with_dataset_defaults(from_flags("mlp", 1, {"augment": "none"}), {"augment": "crop-flip"}).augment == "none"
    workspace.run("data_prep", "--dataset", "digits")
    workspace.run("train", "--arch", "mlp", "--epochs", "1")
    records = leet_records(workspace.run_dirs()[-1])
    logged = next(r["run"]["config"]["update"] for r in records if r["type"] == "run")
    later = [r["config"]["update"] for r in records if r["type"] == "config"]
    assert logged["augment"] == "none" and logged["hidden"] == 512 and "dense" not in logged
    assert all(set(update) <= {"dataset_ref", "dataset_digest"} for update in later), later


def test_a_validation_loss_that_is_not_finite_stops_training_with_a_clear_message():
    model = engine.prepare(build_model(recipe_for("cnn")), torch.device("cpu"))
    x, y = separable(100)
    data = engine.to_tensors(x, y, torch.device("cpu"))
    # the training step is fine; the model that evaluation sees is not
    model.register_forward_hook(lambda module, args, out: out if module.training else out * float("nan"))
    with pytest.raises(engine.NonFiniteLoss, match="validation loss became nan in epoch 1"):
        engine.fit(model, data, data, TrainConfig(epochs=2, batch_size=32), progress=False)
