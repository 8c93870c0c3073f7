"""Models and the training engine on small data, without W&B."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from app.errors import UserError
from app.models import build_model, model_defaults
from app.training import engine
from app.training.checkpoint import load_checkpoint, save_checkpoint
from app.training.optimizer import FusedAdam, make_optimizer
from app.training.recipe import check_locked, hyperparameters, make_recipe


def recipe_for(arch, **over):
    hyper = hyperparameters(arch, over)
    return make_recipe(arch, hyper, [1, 28, 28], [str(i) for i in range(10)],
                       {"ref": "x-split:v0", "digest": "d", "name": "digits"})


@pytest.mark.parametrize("arch, params", [("cnn", 454_922), ("mlp", 669_706)])
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
    history = engine.fit(model, train, val, lr=1e-3, batch_size=32, epochs=epochs, seed=seed, progress=False)
    return model, history


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
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
    history = engine.fit(model, data, data, lr=1e-3, batch_size=32, epochs=5, seed=0,
                         on_epoch=lambda r: r["epoch"] == 2, progress=False)
    assert len(history) == 2


def test_nan_loss_stops_with_a_clear_message():
    model = engine.prepare(build_model(recipe_for("mlp")), torch.device("cpu"))
    x, y = separable(100)
    data = engine.to_tensors(x, y, torch.device("cpu"))
    with torch.no_grad():
        model[1].weight.fill_(float("nan"))
    with pytest.raises(engine.NonFiniteLoss, match="learning rate"):
        engine.fit(model, data, data, lr=1e-3, batch_size=32, epochs=2, seed=0, progress=False)


def test_checkpoint_round_trips_the_recipe_and_weights(tmp_path):
    model, _ = fit_once("mlp", epochs=1)
    recipe = recipe_for("mlp")
    save_checkpoint(model, recipe, tmp_path)
    loaded, back = load_checkpoint(tmp_path)
    assert back == json.loads(json.dumps(recipe))
    assert all(torch.equal(model.state_dict()[k], loaded.state_dict()[k]) for k in model.state_dict())


def test_a_pickled_payload_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    save_checkpoint(build_model(recipe_for("mlp")), recipe_for("mlp"), tmp_path)
    torch.save({"weights": Evil()}, tmp_path / "model.pt")
    with pytest.raises(UserError, match="refused to load"):
        load_checkpoint(tmp_path)


def test_unknown_architecture_and_locked_hyperparameters():
    with pytest.raises(UserError, match="unknown architecture 'resnet'"):
        build_model({"arch": "resnet", "input_shape": [1, 28, 28], "num_classes": 10, "model": {}})
    recipe = recipe_for("cnn")
    check_locked(recipe, {"lr": recipe["hyperparameters"]["lr"], "seed": None})
    with pytest.raises(UserError, match="lr"):
        check_locked(recipe, {"lr": 0.5})
    with pytest.raises(UserError, match="hidden"):
        hyperparameters("cnn", {"hidden": 3})
    assert model_defaults("mlp") == {"hidden": 512}


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_fused_adam_updates_exactly_as_torch_optim_adam(arch):
    torch.manual_seed(0)
    ours = build_model(recipe_for(arch)).eval()  # eval: no dropout, so both see the same gradients
    theirs = build_model(recipe_for(arch)).eval()
    theirs.load_state_dict(ours.state_dict())
    optimizers = [make_optimizer(ours, 1e-3), torch.optim.Adam(theirs.parameters(), lr=1e-3, fused=True)]
    assert isinstance(optimizers[0], FusedAdam)
    x, y = separable(64)
    data = engine.to_tensors(x, y, torch.device("cpu"))
    for _ in range(5):
        for model, optimizer in zip((ours, theirs), optimizers):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(data.images), data.labels).backward()
            optimizer.step()
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert all(torch.equal(mine[k], reference[k]) for k in mine)
    assert not torch.equal(mine["1.weight" if arch == "mlp" else "0.weight"],
                           build_model(recipe_for(arch)).state_dict()["1.weight" if arch == "mlp" else "0.weight"])


def test_fused_adam_leaves_a_parameter_without_gradient_alone():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = FusedAdam([a, b], lr=0.1)
    a.grad = torch.ones(3)
    optimizer.step()
    assert torch.all(a < 1) and torch.equal(b, torch.ones(3))


def test_training_does_not_import_torch_dynamo(tmp_path):
    """torch.optim imports torch._dynamo (1.5-2 s of every trial's start); the engine must not need it."""
    code = (
        "import sys, numpy as np, torch\n"
        "from app.models import build_model\n"
        "from app.training import engine\n"
        "from app.training.recipe import hyperparameters, make_recipe\n"
        "recipe = make_recipe('cnn', hyperparameters('cnn', {}), [1, 28, 28], [str(i) for i in range(10)], {})\n"
        "x = np.random.default_rng(0).integers(0, 255, (64, 28, 28)).astype(np.uint8)\n"
        "data = engine.to_tensors(x, np.arange(64) % 10, torch.device('cpu'))\n"
        "engine.fit(build_model(recipe), data, data, lr=1e-3, batch_size=32, epochs=1, seed=0, progress=False)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
