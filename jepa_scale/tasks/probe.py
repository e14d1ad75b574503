"""Attentive probing: one optimizer step of every probe head of a grid on the frozen encoder's features, each head
with its own LR/WD schedule; and the prediction of a batch (softmax averaged over views).

The heads live in one `ProbeGrid` module (one wrapper, one optimizer with parameter groups per head); since the heads
share no parameter, the sum of their losses gives each head the gradient of its own loss, as the official
per-head backward passes do. V1's two groups per head (biases and 1-D params without decay) and V2's single group
(everything decayed) are the official optimiser setups.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from jepa_scale.models.clip_aggregation import average_probabilities
from jepa_scale.optim import Schedules, make_adamw
from jepa_scale.tasks.base import TASKS, NonFiniteGuard


def head_schedules(head, ipe: int, epochs: int) -> Schedules:
    """The official probe schedules of one head: warmup then cosine LR over int(epochs * ipe) steps, cosine WD."""
    total = int(epochs * ipe)
    return Schedules(start_lr=head.start_lr, ref_lr=head.lr, final_lr=head.final_lr,
                     warmup_steps=int(head.warmup * ipe), total_steps=max(1, total), ref_wd=head.weight_decay,
                     final_wd=head.final_weight_decay, ema_start=0.0, ema_end=0.0, ema_steps=1.0)


def head_param_groups(classifier: nn.Module, head: int, decay_all: bool) -> list[dict]:
    """V2 (decay_all): one group, decayed whole. V1: Linear weights and the query token decayed, then biases and
    1-D params without decay."""
    named = list(classifier.named_parameters())
    if decay_all:
        return [{"params": [p for _, p in named], "head": head}]
    decays = [p for n, p in named if "bias" not in n and p.ndim != 1]
    rest = [p for n, p in named if not ("bias" not in n and p.ndim != 1)]
    return [{"params": decays, "head": head},
            {"params": rest, "head": head, "WD_exclude": True, "weight_decay": 0.0}]


def probe_optimizer(grid: nn.Module, decay_all: bool) -> torch.optim.Optimizer:
    groups = [g for h, c in enumerate(grid.classifiers) for g in head_param_groups(c, h, decay_all)]
    return make_adamw(groups)


def set_head_lr_wd(optimizer: torch.optim.Optimizer, values: list[tuple[float, float]]):
    for group in optimizer.param_groups:
        lr, wd = values[group["head"]]
        group["lr"] = lr
        if not group.get("WD_exclude", False):
            group["weight_decay"] = wd


def head_losses(logits: list[list[torch.Tensor]], labels: torch.Tensor) -> torch.Tensor:
    """[H] losses: per head, the mean over outputs (views, or segments) of the cross-entropy."""
    return torch.stack([torch.stack([F.cross_entropy(out[h].float(), labels) for out in logits]).mean()
                        for h in range(len(logits[0]))])


def head_probabilities(logits: list[list[torch.Tensor]]) -> torch.Tensor:
    """[H, B, C]: per head, the softmax averaged over the outputs."""
    return torch.stack([average_probabilities([out[h] for out in logits]) for h in range(len(logits[0]))])


@TASKS.register("probe")
class Probe:
    """Not built by the pretraining Trainer: `jepa_scale.evals.runner.ProbeRun` builds it from an EvalSpec."""

    columns = ("loss", "best_top1", "lr", "grad_norm", "skipped_steps")

    def __init__(self, spec, engine, ipe: int, max_nonfinite_steps: int = 10):
        self.engine, self.clip = engine, spec.clip_grad
        self.schedules = [head_schedules(h, ipe, spec.epochs) for h in spec.heads]
        self.guard = NonFiniteGuard(max_nonfinite_steps, engine.device)
        # probe.official_float16: float16 autocast with loss scaling, as the official `use_bfloat16` really runs
        # (CUDA only; the engines do bfloat16 or float32, so this mode steps the optimizer here)
        self.scaler = (torch.amp.GradScaler("cuda") if spec.amp == "float16" and engine.device.type == "cuda"
                       else None)

    def autocast(self):
        if self.scaler is not None:
            return torch.autocast("cuda", dtype=torch.float16)
        return self.engine.autocast()

    def _scaled_step(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, s = self.engine, self.scaler
        s.scale(loss).backward()
        s.unscale_(e.optimizer)
        params = [p for p in e.modules["classifiers"].parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip if self.clip is not None else float("inf"))
        s.step(e.optimizer)  # skipped by the scaler when the unscaled gradients hold inf/NaN
        s.update()
        e.optimizer.zero_grad(set_to_none=True)
        return norm, torch.isfinite(norm) & torch.isfinite(loss.detach())

    def logits(self, features: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """logits[output][head], each [B, C]. The outputs (same shape) go through the heads as one batch: one
        forward per step, which data-parallel wrappers require."""
        per_head = self.engine.models["classifiers"](torch.cat(features))
        chunks = [h.split(features[0].shape[0]) for h in per_head]
        return [[chunks[h][o] for h in range(len(chunks))] for o in range(len(features))]

    def train_step(self, step: int, batches: list) -> tuple[dict, dict]:
        """batches: [(features list[outputs] of [B, N, D], labels [B])]. Returns device scalars (loss: mean over
        heads; best_top1: the best head's batch top-1, %) plus `correct` [H] counts, and host scalars."""
        e = self.engine
        (features, labels), = batches
        lrs = [(s.lr(step + 1), s.wd(step + 1)) for s in self.schedules]
        set_head_lr_wd(e.optimizer, lrs)
        with self.autocast():
            logits = self.logits(features)
        losses = head_losses(logits, labels)
        if self.scaler is not None:
            grad_norm, finite = self._scaled_step(losses.sum())
        else:
            e.backward(losses.sum())
            grad_norm, finite = e.step(self.clip, losses.sum())
        self.guard.update(finite)
        correct = (head_probabilities(logits).argmax(-1) == labels).sum(-1)
        best = 100.0 * correct.max().float() / labels.numel()
        return ({"loss": losses.mean().detach(), "best_top1": best, "grad_norm": grad_norm,
                 "skipped_steps": self.guard.skipped, "correct": correct.detach()},
                {"lr": lrs[0][0], "flops": 0.0})

    @torch.no_grad()
    def predict(self, features: list[torch.Tensor]) -> torch.Tensor:
        """[H, B, C] probabilities of every head (softmax averaged over views and segments)."""
        with self.autocast():
            return head_probabilities(self.logits(features))

    def after_flush(self, step, checkpoint_location):
        self.guard.check(step, checkpoint_location)
