"""Adam for the engine: PyTorch's fused Adam kernel, called without torch.optim around it.

`torch.optim.Adam(fused=True)` ends in one call of `torch._fused_adam_` per step. The
torch.optim wrapper around it costs two things measured here: every torch.optim optimizer
imports torch._dynamo on first use (1.5-2 s of a trial's start: it pulls in inductor), and
its step adds about 0.25 ms of Python (7% of the MLP's 3.5 ms step on a 2-core CPU). So the
engine calls the kernel itself, with the state torch.optim would keep. The kernel is a
private op: `make_optimizer` checks it on a one-element probe first and otherwise uses
torch.optim.Adam, and tests/test_engine.py checks the update equals torch.optim's.
"""
from __future__ import annotations

import torch
from torch import nn

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the original keras Adam's
EPS = 1e-8


class FusedAdam:
    """Adam (no weight decay, no amsgrad) over parameters on one device with one dtype."""

    def __init__(self, params: list[torch.Tensor], lr: float):
        self.params = params
        self.lr = lr
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params]
        # per-parameter step counts, float32 on the device, as torch.optim keeps them for this kernel
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]

    def zero_grad(self) -> None:
        """Gradients to None, as torch.optim's zero_grad() does by default."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        # as torch.optim: a parameter without a gradient this step is left alone
        stepped = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not stepped:
            return
        steps = [self.steps[i] for i in stepped]
        torch._foreach_add_(steps, 1)
        _fused_adam([self.params[i] for i in stepped], [self.params[i].grad for i in stepped],
                    [self.exp_avgs[i] for i in stepped], [self.exp_avg_sqs[i] for i in stepped], steps, self.lr)


def _fused_adam(params, grads, exp_avgs, exp_avg_sqs, steps, lr: float) -> None:
    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=BETAS[0], beta2=BETAS[1],
                       weight_decay=0.0, eps=EPS, amsgrad=False, maximize=False)


def _kernel_works(device: torch.device, dtype: torch.dtype) -> bool:
    """The private kernel exists in this torch, with this signature, for this device and dtype."""
    p = torch.ones(1, device=device, dtype=dtype)
    try:
        probe = FusedAdam([p], lr=0.1)
        p.grad = torch.ones_like(p)
        probe.step()
    except (AttributeError, TypeError, RuntimeError, NotImplementedError):
        return False
    return bool(p.item() < 1.0)  # one Adam step moves a parameter with a positive gradient down


def make_optimizer(model: nn.Module, lr: float):
    """FusedAdam where the kernel works for the model's device and dtype, else torch.optim.Adam
    (fused where this torch has it for the device)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kinds = {(p.device, p.dtype) for p in params}
    if len(kinds) == 1 and _kernel_works(*next(iter(kinds))):
        return FusedAdam(params, lr)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)
