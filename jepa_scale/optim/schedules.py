"""The one place that computes LR, weight decay and EMA momentum, as pure functions of the step.

`lr(n)` and `wd(n)` are the values the official schedulers return on their n-th `.step()` call (the official loop
steps them at the start of every iteration, so iteration s, 0-based, trains with lr(s + 1)). `momentum(s)` is the
s-th value of the official momentum generator (iteration s uses momentum(s)). Pure functions make a resume exact
without replaying the schedulers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedules:
    start_lr: float
    ref_lr: float
    final_lr: float
    warmup_steps: int
    total_steps: int  # int(ipe_scale * epochs * ipe): schedules run past the training length on purpose (V1)
    ref_wd: float
    final_wd: float
    ema_start: float
    ema_end: float
    ema_steps: float  # ipe * epochs * ipe_scale, unrounded as in the official generator
    lr_shape: str = "cosine"
    clip_grad: float | None = None
    clip_from_step: int = 0  # the official loop clips once the epoch index exceeds `warmup` (in epochs)

    @classmethod
    def from_config(cls, o) -> "Schedules":
        return cls(start_lr=o.start_lr, ref_lr=o.lr, final_lr=o.final_lr, warmup_steps=int(o.warmup * o.ipe),
                   total_steps=int(o.ipe_scale * o.epochs * o.ipe), ref_wd=o.weight_decay,
                   final_wd=o.final_weight_decay, ema_start=o.ema[0], ema_end=o.ema[1],
                   ema_steps=o.ipe * o.epochs * o.ipe_scale, lr_shape=o.lr_schedule, clip_grad=o.clip_grad,
                   clip_from_step=(math.floor(o.warmup) + 1) * o.ipe)

    def lr(self, n: int) -> float:
        if n < self.warmup_steps:
            return self.start_lr + n / max(1, self.warmup_steps) * (self.ref_lr - self.start_lr)
        progress = (n - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if self.lr_shape == "constant":
            return self.ref_lr
        if self.lr_shape == "linear":  # V2 cooldown
            return max(self.final_lr, self.ref_lr + min(1.0, progress) * (self.final_lr - self.ref_lr))
        cosine = self.final_lr + (self.ref_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(self.final_lr, cosine)

    def wd(self, n: int) -> float:
        w = self.final_wd + (self.ref_wd - self.final_wd) * 0.5 * (1.0 + math.cos(math.pi * n / self.total_steps))
        return max(self.final_wd, w) if self.final_wd <= self.ref_wd else min(self.final_wd, w)

    def momentum(self, s: int) -> float:
        return self.ema_start + s * (self.ema_end - self.ema_start) / self.ema_steps

    def clip(self, s: int) -> float | None:
        """The gradient-norm bound of iteration s, or None (no clipping during warmup, as the official loop)."""
        return self.clip_grad if s >= self.clip_from_step else None

    def at_iteration(self, s: int) -> tuple[float, float, float]:
        """(lr, wd, momentum) used by training iteration s (0-based)."""
        return self.lr(s + 1), self.wd(s + 1), self.momentum(s)
