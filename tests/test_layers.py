"""The fast layers give the stock layers' results: outputs and gradients, ties included."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from app.models import build_model, layers
from app.recipe.config import from_flags
from conftest import recipe_of


def images(batch=8, size=28, seed=0):
    """MNIST-like: mostly exact zeros (ties everywhere after a convolution), some strokes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(batch, 1, size, size)
    x[:, :, 6:20, 10:14] = torch.rand(batch, 1, 14, 4, generator=g)
    return x


def twin_convs(**kwargs):
    torch.manual_seed(0)
    stock = nn.Conv2d(1, 32, **kwargs)
    fast = layers.InputConv2d(1, 32, **kwargs)
    fast.load_state_dict(stock.state_dict())
    return stock, fast


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 5, "padding": "same"},
    {"kernel_size": 3, "padding": "same", "bias": False},
    {"kernel_size": 5, "padding": 0},
    {"kernel_size": (3, 5), "padding": (1, 2)},
])
def test_input_conv_matches_conv2d_forward_and_gradients(kwargs):
    stock, fast = twin_convs(**kwargs)
    x = images()
    out_stock, out_fast = stock(x), fast(x)
    torch.testing.assert_close(out_fast, out_stock, rtol=1e-5, atol=1e-5)
    assert out_fast.is_contiguous(memory_format=torch.channels_last)  # the fast NHWC kernel ran
    grad = torch.randn_like(out_stock)
    out_stock.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(fast.weight.grad, stock.weight.grad, rtol=1e-4, atol=1e-4)
    if stock.bias is not None:
        torch.testing.assert_close(fast.bias.grad, stock.bias.grad, rtol=1e-4, atol=1e-4)
    with torch.inference_mode():
        torch.testing.assert_close(fast.eval()(x), stock.eval()(x), rtol=1e-5, atol=1e-5)


def test_input_conv_falls_back_where_the_fast_path_does_not_apply():
    stock, fast = twin_convs(kernel_size=5, padding=2, stride=2)
    x = images()
    torch.testing.assert_close(fast(x), stock(x))
    # an input that needs its own gradient takes the stock path, which computes it
    _, fast = twin_convs(kernel_size=5, padding="same")
    x = images().requires_grad_()
    fast(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
])
def test_max_pool_matches_stock_including_ties(layout, kwargs):
    stock, fast = nn.MaxPool2d(**kwargs), layers.MaxPool2d(**kwargs)
    torch.manual_seed(0)
    base = torch.randn(4, 8, 14, 14)
    base[:, :, :6] = 0.5  # whole windows of equal values: the gradient must go where the stock layer sends it
    a = base.clone().contiguous(memory_format=layout).requires_grad_()
    b = base.clone().contiguous(memory_format=layout).requires_grad_()
    out_stock, out_fast = stock(a), fast(b)
    assert torch.equal(out_fast, out_stock)
    assert out_fast.is_contiguous()
    grad = torch.randn_like(out_stock)
    out_stock.backward(grad)
    out_fast.backward(grad)
    assert torch.equal(b.grad, a.grad)
    assert b.grad.is_contiguous(memory_format=layout)
    with torch.no_grad():
        assert torch.equal(fast(base), stock(base))


def test_dropout_keeps_each_element_with_probability_one_minus_p_and_rescales():
    p = 0.3
    drop = layers.Dropout(p).train()
    x = torch.ones(400_000)
    torch.manual_seed(1)
    y = drop(x)
    kept = y != 0
    keep_lanes = round((1 - p) * 65536)
    assert torch.allclose(y[kept], torch.tensor(65536 / keep_lanes))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    # every lane of the 64-bit draws is uniform (a plain random_() would leave one lane biased)
    for lane in range(4):
        assert abs(kept[lane::4].float().mean().item() - (1 - p)) < 0.01, lane
    assert torch.equal(drop.eval()(x), x)


def test_dropout_gradient_is_the_mask_and_follows_the_seed():
    drop = layers.Dropout(0.5).train()
    x = torch.randn(64, 32, 14, 14, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).float() * 2.0)
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)
    torch.manual_seed(4)
    assert not torch.equal(drop(x), y)


def test_cnn_weights_load_into_stock_layers_with_the_same_predictions():
    """The state_dict is that of stock torch.nn layers, in the original's order (ReLU before pool)."""
    recipe = recipe_of(from_flags("cnn", 5, {}), [1, 28, 28], [str(i) for i in range(10)],
                         {"ref": "", "digest": "", "name": ""})
    torch.manual_seed(0)
    fast = build_model(recipe).eval()
    stock = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    ).eval()
    stock.load_state_dict(fast.state_dict())
    x = images(batch=16)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), stock(x), rtol=1e-4, atol=1e-5)
