"""AdamW as the official loop sets it up, and the device-side skip of a non-finite step."""
from __future__ import annotations

import torch


def make_adamw(param_groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
               ) -> torch.optim.AdamW:
    # fused: one kernel per step, and it honours `found_inf`, so a non-finite step is skipped without a host sync
    return torch.optim.AdamW(param_groups, betas=betas, eps=eps, fused=True)


# how an optimizer runs, as opposed to what it learnt: kept from our construction when a saved state is loaded
_IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict):
    """Load a saved optimizer state (moments, step counts, hyperparameters) but keep our implementation flags: an
    official checkpoint's groups have no `fused`, and loading them as they are would switch off the fused kernel
    that skips a non-finite step on the device. The flags go in before loading, so that torch places the step
    counts where the fused kernel wants them."""
    groups = [{**saved, **{k: ours[k] for k in _IMPLEMENTATION if k in ours}}
              for saved, ours in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": groups})


def skip_next_step_if(optimizer: torch.optim.Optimizer, bad: torch.Tensor):
    """Make the next fused-optimizer step a no-op (params, moments and step count untouched) where `bad` is true;
    the same mechanism GradScaler uses."""
    optimizer.grad_scale = None
    optimizer.found_inf = bad.float()


def set_lr_wd(optimizer: torch.optim.Optimizer, lr: float, wd: float):
    for group in optimizer.param_groups:
        group["lr"] = lr
        if not group.get("WD_exclude", False):
            group["weight_decay"] = wd
