"""Transfer learning on torchvision's classifiers (app/models/zoo.py). No weights can be
downloaded here: the tests plant a weights file in torch's hub cache under the name torchvision
looks for, and check that what loads is what was planted."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app import names
from app.models import build_model, load_pretrained, model_input, zoo
from app.recipe import InputSpec
from app.recipe.config import from_flags
from conftest import recipe_of


def recipe_for(arch: str, channels: int = 1):
    return recipe_of(from_flags(arch, 1, {"pretrained": True}), [channels, 12, 12], ["a", "b", "c"],
                       {"ref": "x:v0", "digest": "d", "name": "x"})


def plant_weights(arch: str, torch_home: Path, seed: int = 0) -> dict:
    """A state_dict of `arch`'s ImageNet shape (1000 classes), random, saved where torchvision's
    download would have put it: $TORCH_HOME/hub/checkpoints/<the file name of the weights' URL>."""
    from torchvision.models import get_model

    torch.manual_seed(seed)
    state = {k: (torch.rand_like(v) + 0.5 if k.endswith("running_var") else torch.randn_like(v) * 0.05)
             if v.is_floating_point() else v for k, v in get_model(arch, weights=None).state_dict().items()}
    target = torch_home / "hub" / "checkpoints" / zoo.weights_of(arch).url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)
    return state


@pytest.mark.parametrize("arch", names.PRETRAINED_ARCHITECTURES)
def test_planted_imagenet_weights_load_into_every_layer_but_the_new_head(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    planted = plant_weights(arch, tmp_path)
    model = build_model(recipe_for(arch))
    load_pretrained(recipe_for(arch).config, model)
    loaded = model.net.state_dict()
    head = [k for k in loaded if loaded[k].shape != planted[k].shape]
    assert head and all(loaded[k].shape[0] == 3 for k in head)  # the classifier, for 3 classes
    assert all(torch.equal(loaded[k], planted[k]) for k in loaded if k not in head)
    with torch.no_grad():  # greyscale replicated, resized to the weights' input, 3 logits
        assert model.eval()(torch.rand(2, 1, 12, 12)).shape == (2, 3)


def test_the_model_sees_images_as_its_weights_were_trained_and_the_recipe_records_it():
    model = build_model(recipe_for("mobilenet_v3_large", channels=1)).eval()
    seen = []
    model.net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    grey = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        model(grey)
    transform = zoo.input_transform("mobilenet_v3_large")
    assert seen[0].shape == (1, 3, 224, 224) and transform["size"] == [224, 224]
    mean = torch.tensor(transform["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(transform["std"]).view(1, 3, 1, 1)
    upsized = torch.nn.functional.interpolate(grey.expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear")
    assert torch.allclose(seen[0], (upsized - mean) / std, atol=1e-6)
    # the data are not normalised again outside: the recipe's preprocessing is the identity
    spec = model_input("mobilenet_v3_large", InputSpec(1, (12, 12), (0.4,), (0.3,)))
    assert (spec.mean, spec.std, spec.model_input) == ((0.0,), (1.0,), transform)


def test_pretrained_fine_tuning_runs_the_flow_and_without_weights_stops_before_any_run(workspace, tmp_path):
    ws = workspace
    ws.env["TORCH_HOME"] = str(tmp_path / "torch")
    # 6%: the smallest sample data_prep stratifies (10 images a class); each image costs MobileNet
    # at 224 px (57 -> 43 CPU-seconds for the test against 10%)
    ws.run("data_prep", "--dataset", "digits", "--fraction", "6")
    before, runs = ws.store_snapshot(), len(ws.run_dirs())
    missing = ws.run("train", "--arch", "mobilenet_v3_large", "--pretrained", "--epochs", "1", check=False)
    assert missing.returncode == 2 and "--pretrained needs torchvision's ImageNet weights MobileNet_V3_Large_Weights" in missing.stderr
    assert ws.store_snapshot() == before and len(ws.run_dirs()) == runs

    plant_weights("mobilenet_v3_large", tmp_path / "torch")
    out = ws.run("train", "--arch", "mobilenet_v3_large", "--pretrained", "--epochs", "1", "--batch-size", "32").stdout
    assert "digits-mobilenet_v3_large:v0" in out
    [model] = ws.versions("digits-mobilenet_v3_large")
    recipe = model["metadata"]
    assert recipe["hyperparameters"]["pretrained"] is True and recipe["input"]["model_input"]["size"] == [224, 224]
    ws.run("registry", "link", "digits-mobilenet_v3_large:v0", "digits-mobilenet_v3_large", "--alias", "to_evaluate")
    evaluated = ws.run("evaluate", "--no-generate-images", "--promote").stdout
    assert "promoted to" in evaluated  # the first model, and its ONNX export (resize and normalisation inside)
    from PIL import Image

    Image.new("L", (40, 30), color=200).save(ws.path / "photo.png")
    by_onnx = ws.run("predict", "photo.png", "--engine", "onnx", "--json").stdout
    by_torch = ws.run("predict", "photo.png", "--engine", "torch", "--json").stdout
    import json

    fast, plain = json.loads(by_onnx), json.loads(by_torch)
    assert fast["engine"].startswith("onnxruntime (digits-mobilenet_v3_large-onnx:v0)") and plain["engine"] == "torch"
    onnx_row, torch_row = fast["predictions"][0], plain["predictions"][0]
    assert onnx_row["class"] == torch_row["class"]
    assert abs(onnx_row["confidence"] - torch_row["confidence"]) < 1e-4


def test_fine_tuning_trains_the_new_head_alone_first_then_the_backbone_at_a_lower_rate():
    import numpy as np

    from app.training import engine
    from app.recipe.config import TrainConfig

    rng = np.random.default_rng(0)
    data = engine.to_tensors(rng.integers(0, 256, (16, 8, 8), dtype=np.uint8), np.arange(16) % 3,
                             torch.device("cpu"))
    model = build_model(recipe_for("mobilenet_v3_large"))
    backbone, head = model.backbone_parameters()[0], model.head().weight
    seen = [(backbone.detach().clone(), head.detach().clone())]
    config = TrainConfig(arch="mobilenet_v3_large", pretrained=True, epochs=2, batch_size=8, warmup=0.0, schedule="constant",
                         head_only=0.5, backbone_lr=0.1)
    rates = []
    original = engine.make_schedule

    def recording(optimizer, *args):
        scheduler = original(optimizer, *args)
        optimizer.register_step_pre_hook(lambda opt, a, k: rates.append(
            {g["backbone"]: g["lr"] for g in opt.param_groups}))
        return scheduler

    engine.make_schedule, saved = recording, engine.make_schedule
    try:
        engine.fit(model, data, data, config, progress=False,
                   on_epoch=lambda record: seen.append((backbone.detach().clone(), head.detach().clone())) and False)
    finally:
        engine.make_schedule = saved
    assert torch.equal(seen[1][0], seen[0][0]) and not torch.equal(seen[1][1], seen[0][1])  # epoch 1: head only
    assert not torch.equal(seen[2][0], seen[1][0])  # epoch 2: the backbone learns too
    assert rates == [{False: 1e-3, True: 0.0}] * 2 + [{False: 1e-3, True: pytest.approx(1e-4)}] * 2


def test_the_pretrained_sweep_file_is_picked_for_every_torchvision_arch_and_passes_pretrained_as_a_switch():
    from app.pipelines.train import parse_args
    from app.tuning.sweep_config import (expand_command, load_sweep_config, sweep_config_path, validate,
                                         with_fixed)

    for arch in names.PRETRAINED_ARCHITECTURES:
        path = sweep_config_path(None, arch)
        assert path.name == "sweep-pretrained.yaml"
        config = load_sweep_config(path)
        validate(config, str(path), arch=arch)
        swept = with_fixed(config, {"arch": arch, "dataset": "digits"})
        params = {k: v["value"] if "value" in v else (v.get("values") or [v.get("min")])[0]
                  for k, v in swept["parameters"].items()}
        args = parse_args(expand_command(swept, params)[2:])
        assert (args.arch, args.pretrained, args.head_only) == (arch, True, 0.0)
    with pytest.raises(Exception, match="does not apply to --arch cnn"):
        validate(load_sweep_config(sweep_config_path(None, "resnet50")), arch="cnn")
