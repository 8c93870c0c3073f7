"""Mixed precision, channels_last and torch.compile: chosen per device, off the recipe, and
--compile's failure a clear error. This machine has no GPU: the CUDA choice is tested with
torch.cuda's capability query stood in for, the bf16 and channels_last steps run on the CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from app.models import build_model
from app.training import engine
from app.recipe.config import DeviceOptions, TrainConfig
from test_engine import recipe_for, separable

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_auto_is_bf16_and_channels_last_on_a_cuda_gpu_and_plain_fp32_on_the_cpu(monkeypatch):
    cnn, mlp = build_model(recipe_for("cnn")), build_model(recipe_for("mlp"))
    assert engine.accelerate(DeviceOptions(), CPU, cnn) == engine.Acceleration()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert engine.accelerate(DeviceOptions(), CUDA, cnn) == engine.Acceleration(torch.bfloat16, channels_last=True)
    assert engine.accelerate(DeviceOptions(), CUDA, mlp) == engine.Acceleration(torch.bfloat16, channels_last=False)
    assert engine.accelerate(DeviceOptions(precision="fp32"), CUDA, cnn).autocast is None
    # asked for explicitly, bf16 runs on the CPU too; --compile wherever it is asked for
    assert engine.accelerate(DeviceOptions(precision="bf16", compile=True), CPU, cnn) == \
        engine.Acceleration(torch.bfloat16, channels_last=False, compile=True)


def test_bf16_asked_of_a_gpu_without_it_names_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert engine.accelerate(DeviceOptions(), CUDA, build_model(recipe_for("cnn"))).autocast is None
    try:
        engine.accelerate(DeviceOptions(precision="bf16"), CUDA, build_model(recipe_for("cnn")))
    except engine.UserError as err:
        assert "Tesla T4" in str(err) and "--precision fp32" in str(err)
    else:
        raise AssertionError("bf16 on a GPU without it was accepted")


def test_bf16_autocast_and_channels_last_steps_learn_and_leave_fp32_nchw_weights():
    x, y = separable(n=400)
    train, val = engine.to_tensors(x[:300], y[:300], CPU), engine.to_tensors(x[300:], y[300:], CPU)
    engine.seed_everything(0)
    model = build_model(recipe_for("cnn"))
    history = engine.fit(model, train, val, TrainConfig(lr=3e-3, batch_size=32, epochs=1, seed=0),
                         progress=False, acceleration=engine.Acceleration(torch.bfloat16, channels_last=True))
    assert history[-1]["val/accuracy"] >= 0.9
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    # the autocast really ran: the same steps in fp32 end with other weights
    engine.seed_everything(0)
    plain = build_model(recipe_for("cnn"))
    engine.fit(plain, train, val, TrainConfig(lr=3e-3, batch_size=32, epochs=1, seed=0), progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))


def test_compile_failure_is_a_clear_error_that_logs_nothing(workspace, tmp_path):
    workspace.run("data_prep", "--dataset", "digits")
    # a C++ compiler that does not exist: inductor's real failure, turned into a clear error
    broken = dict(workspace.env, CXX=str(tmp_path / "no-such-g++"), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"))
    before = workspace.store_snapshot()
    proc = workspace.run("train", "--arch", "mlp", "--epochs", "1", "--compile", check=False, env=broken)
    assert proc.returncode != 0
    assert "--compile: torch.compile failed" in proc.stderr and "without --compile" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert workspace.versions("digits-mlp") == []
    assert set(workspace.store_snapshot()) == set(before)  # no file of a model version (the dataset's use stays)


@pytest.mark.slow  # a minute: inductor compiles the model's forward and backward on 2 cores
def test_compile_trains_a_model_that_records_it_and_evaluates(workspace, tmp_path):
    workspace.run("data_prep", "--dataset", "digits")
    workspace.run("train", "--arch", "mlp", "--epochs", "1", "--compile",
                  env=dict(workspace.env, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache")))
    [model] = workspace.versions("digits-mlp")
    assert model["metadata"]["trained_on"] == {"device": "cpu", "precision": "fp32", "channels_last": False,
                                               "compile": True}
    assert "compile" not in model["metadata"]["hyperparameters"]  # a device option, not the recipe
    workspace.run("evaluate", "--model", "digits-mlp:latest")  # the plain module's weights load


def test_a_failed_step_is_named_for_what_it_is():
    """Out of memory names the batch size; under --compile the step runs once more without
    torch.compile: a compiler failure works eagerly, the model's own error fails again as itself."""
    oom = engine.step_failure(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), 512, None)
    assert isinstance(oom, engine.UserError) and "out of memory" in str(oom) and "--batch-size (now 512)" in str(oom)
    assert engine.step_failure(ValueError("x"), 8, None) is None  # raised as it is
    compiler = engine.step_failure(RuntimeError("InductorError: CppCompileError"), 8, retry_eagerly=lambda: None)
    assert "--compile: torch.compile failed" in str(compiler)


def test_under_compile_the_models_own_shape_error_is_not_called_a_compile_failure():
    from torch import nn

    rng = np.random.default_rng(0)
    data = engine.to_tensors(rng.integers(0, 256, (16, 6, 6), dtype=np.uint8), np.arange(16) % 2, CPU)
    broken = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))  # 36 inputs, not 10: the model's own bug
    with pytest.raises(RuntimeError, match="cannot be multiplied") as caught:
        engine.fit(broken, data, data, TrainConfig(epochs=1, batch_size=8), progress=False,
                   acceleration=engine.Acceleration(compile=True))
    assert not isinstance(caught.value, engine.UserError)
