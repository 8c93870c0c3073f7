"""Drop-in replacements for three torch.nn layers whose stock CPU kernels are slow at MNIST sizes.

Each class subclasses the layer it replaces: same arguments, same parameters and state_dict,
same results (tests/test_layers.py compares outputs and gradients with the stock layer, ties
included). Each takes its fast path only on the CPU and only where it applies, and otherwise
runs the stock forward, so a GPU keeps cuDNN's kernels.

Measured on a 2-core AVX2 CPU at batch 64, 28x28 (benchmarks/bench_train.py shows the whole step):
- Conv2d with one input channel: oneDNN picks its NCHW kernel, 5.0 ms forward; viewed as
  channels_last it picks its NHWC kernel, 0.8 ms. Its weight gradient takes 6-8 ms; a window
  view and one matmul take 1.5 ms.
- MaxPool2d: the NCHW kernel takes 5.0 ms forward, the channels_last kernel 0.4 ms (plus a
  0.4 ms layout copy where the input is NCHW).
- Dropout: `bernoulli_` draws one double per element (4.0 ms for 64x32x14x14); 16-bit lanes of
  64-bit draws take 0.7 ms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pair(value) -> tuple:
    """(v, v) for one number, a pair as it is: how torch.nn's pooling layers hold their sizes."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _cpu_batch(x: torch.Tensor) -> bool:
    """A 4-d (N, C, H, W) tensor on the CPU outside autocast (--precision bf16 there): where the
    fast paths apply; their hand-written gradients are fp32's."""
    return x.device.type == "cpu" and x.dim() == 4 and not torch.is_autocast_enabled("cpu")


class InputConv2d(nn.Conv2d):
    """Conv2d for a network's first layer: one input channel, stride 1, the input needs no grad."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self._fast_padding()
        if padding is None or not _cpu_batch(x) or x.requires_grad or not self.weight.is_contiguous():
            return super().forward(x)
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return _InputConvFunction.apply(x, self.weight, self.bias, padding)
        return F.conv2d(x, _as_channels_last(self.weight), self.bias, padding=padding)

    def _fast_padding(self) -> tuple[int, int] | None:
        """(pad_h, pad_w) where the fast path applies, None otherwise."""
        if (self.in_channels != 1 or self.groups != 1 or self.stride != (1, 1) or self.dilation != (1, 1)
                or self.padding_mode != "zeros"):
            return None
        if self.padding == "same":  # symmetric only for odd kernels
            if any(k % 2 == 0 for k in self.kernel_size):
                return None
            return tuple((k - 1) // 2 for k in self.kernel_size)
        if self.padding == "valid":
            return (0, 0)
        return tuple(self.padding)


def _as_channels_last(weight: torch.Tensor) -> torch.Tensor:
    """The same memory with channels_last strides. With one input channel the channel stride
    addresses nothing, so values are unchanged; oneDNN then chooses its NHWC kernel and returns
    a channels_last output."""
    _, _, kh, kw = weight.shape
    return weight.as_strided(weight.shape, (kh * kw, 1, kw, 1))


class _InputConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x)
        ctx.padding, ctx.kernel = padding, weight.shape[2:]
        ctx.has_bias = bias is not None
        return F.conv2d(x, _as_channels_last(weight), bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        # Only weight and bias need gradients (the input is data). grad_weight[o, i, j] is the sum
        # over batch and positions of grad[b, o, h, w] * x_padded[b, h + i, w + j]: one matmul of
        # the (kh*kw, B*H*W) window matrix with grad as (B*H*W, out_channels).
        (x,) = ctx.saved_tensors
        (pad_h, pad_w), (kh, kw) = ctx.padding, ctx.kernel
        _, out_channels, height, width = grad.shape
        padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h)).squeeze(1)  # (B, H + 2ph, W + 2pw)
        windows = padded.unfold(1, height, 1).unfold(2, width, 1)  # view: (B, kh, kw, H, W)
        columns = windows.permute(1, 2, 0, 3, 4).reshape(kh * kw, -1)
        grad_rows = grad.permute(0, 2, 3, 1).reshape(-1, out_channels)  # a view when grad is channels_last
        grad_weight = (columns @ grad_rows).t().reshape(out_channels, 1, kh, kw)
        grad_bias = grad_rows.sum(0) if ctx.has_bias else None
        return None, grad_weight, grad_bias, None


class MaxPool2d(nn.MaxPool2d):
    """MaxPool2d through PyTorch's channels_last kernel; the output is NCHW-contiguous, as a
    following convolution wants it, and the input gradient has the input's layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _cpu_batch(x) or self.return_indices:
            return super().forward(x)
        args = (_pair(self.kernel_size), _pair(self.stride), _pair(self.padding), _pair(self.dilation),
                self.ceil_mode)
        if torch.is_grad_enabled() and x.requires_grad:
            return _MaxPoolFunction.apply(x, args)
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), *args).contiguous()


class _MaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, args):
        out, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), *args)
        ctx.save_for_backward(x, indices)
        ctx.args = args
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad):
        # Indices are positions within each (H, W) plane whatever the layout, so PyTorch's own
        # backward kernel applies. It picks its kernel by the layout of `grad` and returns the
        # layout of `x`, so `grad` is given x's layout: otherwise it converts the full-size
        # input gradient twice (measured 3.7 ms of a 64x32x28x28 backward).
        x, indices = ctx.saved_tensors
        grad = grad.contiguous(memory_format=_layout_of(x))
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *ctx.args, indices), None


def _layout_of(x: torch.Tensor) -> torch.memory_format:
    return torch.contiguous_format if x.is_contiguous() else torch.channels_last


_LANES = 65536  # a keep decision per 16-bit lane


class Dropout(nn.Dropout):
    """Dropout whose CPU mask takes 16 random bits per element, so p is resolved to 1/65536; the
    kept values are scaled by the exact inverse of the resolved keep probability."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep_lanes = round((1.0 - self.p) * _LANES)
        if not self.training or x.device.type != "cpu" or self.inplace or not 0 < keep_lanes < _LANES:
            return super().forward(x)
        count = x.numel()
        # random_ over the full int64 range: a plain random_() leaves the top bit 0, which
        # would bias one lane in four.
        draws = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
        lanes = draws.view(torch.int16)[:count].view(x.shape)  # uniform in [-32768, 32767]
        mask = (lanes < keep_lanes - _LANES // 2).to(x.dtype).mul_(_LANES / keep_lanes)
        return x * mask
