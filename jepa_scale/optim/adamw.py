"""AdamW with the official parameter groups, and the V1 re-initialisation of the training script."""
from __future__ import annotations

import torch
import torch.nn as nn

from jepa_scale.models.vit import init_vit_weights


def reinit_like_v1_train(*modules: nn.Module, std: float = 0.02):
    """V1's train script re-initialises every Linear (trunc-normal, std 0.02) and LayerNorm after building the
    models, undoing the per-block rescale (convolutions and mask tokens keep their model-class init)."""
    for module in modules:
        init_vit_weights(module, std, convs=False)


def _decays(name: str, p: torch.Tensor) -> bool:
    # the official rule: biases and 1-D params are not decayed (mask tokens are [1, 1, Dp], so they are)
    return "bias" not in name and p.ndim != 1


def param_groups(encoder: nn.Module, predictor: nn.Module) -> list[dict]:
    """The official group order (encoder decay, predictor decay, encoder no-decay, predictor no-decay), so optimizer
    state dicts line up with official checkpoints. Frozen parameters stay listed, as there; AdamW skips them."""
    def pick(model, decay):
        return [p for n, p in model.named_parameters() if _decays(n, p) == decay]

    return [
        {"params": pick(encoder, True)},
        {"params": pick(predictor, True)},
        {"params": pick(encoder, False), "WD_exclude": True, "weight_decay": 0.0},
        {"params": pick(predictor, False), "WD_exclude": True, "weight_decay": 0.0},
    ]


def make_optimizer(encoder: nn.Module, predictor: nn.Module) -> torch.optim.AdamW:
    # fused: one kernel per step, and it honours `found_inf`, so a non-finite step is skipped without a host sync
    return torch.optim.AdamW(param_groups(encoder, predictor), betas=(0.9, 0.999), eps=1e-8, fused=True)


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
