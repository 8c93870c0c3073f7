"""ResNet-18 from torchvision, adapted to small inputs; --pretrained without network; one sweep
file per architecture."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.errors import UserError
from app.models import build
from app.tuning.sweep_config import load_sweep_config, sweep_config_path, validate

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape", [[1, 28, 28], [3, 32, 32], [3, 20, 24]])
def test_resnet_takes_any_channels_and_size(shape):
    model = build("resnet", shape, 7, {"pretrained": False})
    assert model.conv1.in_channels == shape[0] and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.rand(2, *shape)).shape == (2, 7)


def test_pretrained_without_network_is_a_clear_error_before_any_run(workspace, tmp_path):
    workspace.env["TORCH_HOME"] = str(tmp_path / "empty-torch-cache")  # no cached weights
    workspace.run("data_prep", "--dataset", "digits", "--fraction", "20")
    before = workspace.store_snapshot()
    runs = len(workspace.run_dirs())
    proc = workspace.run("train", "--arch", "resnet", "--pretrained", "--epochs", "1", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--pretrained needs torchvision's ImageNet weights" in proc.stderr and "without --pretrained" in proc.stderr
    assert workspace.store_snapshot() == before and len(workspace.run_dirs()) == runs


def test_resnet_trains_through_the_flow_and_evaluates(workspace):
    workspace.run("data_prep", "--dataset", "digits", "--fraction", "10")
    out = workspace.run("train", "--arch", "resnet", "--epochs", "1", "--batch_size", "128").stdout
    assert "digits-resnet:v0" in out
    [model] = workspace.versions("digits-resnet")
    assert model["metadata"]["hyperparameters"]["pretrained"] is False and model["metadata"]["input"]["size"] == [28, 28]
    workspace.run("registry", "link", "digits-resnet:v0", "digits-resnet", "--alias", "to_evaluate")
    assert "test accuracy" in workspace.run("evaluate", "--arch", "resnet").stdout


@pytest.mark.parametrize("arch", ["convnet", "cnn", "mlp", "resnet"])
def test_each_architecture_has_a_valid_sweep_file_of_its_own(arch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # found from any directory
    path = sweep_config_path(None, arch)
    assert path == REPO / ("sweep.yaml" if arch == "convnet" else f"sweep-{arch}.yaml")
    config = load_sweep_config(path)
    validate(config, str(path), arch)
    assert config["parameters"]["arch"] == {"value": arch}  # `wandb agent` trials train it too
    other = "mlp" if arch != "mlp" else "cnn"
    with pytest.raises(UserError, match=f"this sweep file is for --arch {arch}, not {other}"):
        validate(config, str(path), other)
