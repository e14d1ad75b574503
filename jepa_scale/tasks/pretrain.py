"""Pretraining: the recipe's loss over the micro-batches, one clipped optimizer step, the EMA update."""
from __future__ import annotations

import torch

from jepa_scale.optim import Schedules, set_lr_wd
from jepa_scale.tasks.base import TASKS, NonFiniteGuard


@TASKS.register("pretrain")
class Pretrain:
    def __init__(self, cfg, recipe, engine):
        self.recipe, self.engine = recipe, engine
        self.schedules = Schedules.from_config(cfg.optimization)
        self.guard = NonFiniteGuard(cfg.optimization.max_nonfinite_steps, engine.device)
        self.columns = ("loss", "lr", "wd", "momentum", "grad_norm", *recipe.logged, "skipped_steps")

    def micro_step(self, batch, scale: float, last: bool):
        e = self.engine
        with e.accumulate(last):
            with e.autocast():
                loss, logged = self.recipe.loss(e.models, batch)
            e.backward(loss * scale)
        return loss.detach(), logged

    def train_step(self, step: int, batches: list) -> tuple[dict, dict]:
        """Gradients are averaged over the micro-batches and over ranks; a non-finite step is skipped on the
        device (optimizer and EMA untouched)."""
        e, s = self.engine, self.schedules
        lr, wd, momentum = s.at_iteration(step)
        set_lr_wd(e.optimizer, lr, wd)
        out = [self.micro_step(b, 1.0 / len(batches), i == len(batches) - 1) for i, b in enumerate(batches)]
        loss = e.all_reduce_mean(torch.stack([o[0] for o in out]).mean())
        logged = {k: torch.stack([o[1][k] for o in out]).mean() for k in self.recipe.logged}
        grad_norm, finite = e.step(s.clip(step), loss)
        e.ema_update(momentum, apply=finite)
        self.guard.update(finite)
        flops = sum(self.recipe.step_flops(e.modules, b) for b in batches)
        return ({"loss": loss, "grad_norm": grad_norm, **logged, "skipped_steps": self.guard.skipped},
                {"lr": lr, "wd": wd, "momentum": momentum, "flops": flops})

    def after_flush(self, step, checkpoint_location):
        self.guard.check(step, checkpoint_location)
