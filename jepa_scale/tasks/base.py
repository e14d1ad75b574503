"""The task protocol, and the device-side guard against non-finite steps that every task shares."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from jepa_scale.registry import Registry

TASKS = Registry("task", "task")


class NonFiniteTraining(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss or gradient norm (each was skipped)."""


class Task(Protocol):
    columns: tuple[str, ...]  # the logged scalars of a step, in CSV order

    def __init__(self, cfg, recipe, engine): ...

    def train_step(self, step: int, batches: list) -> tuple[dict, dict]:
        """One optimizer step over this rank's micro-batches -> (device scalars, host scalars incl. "flops"); the
        device scalars are not read here (no host sync)."""

    def after_flush(self, step: int, checkpoint_location: Path):
        """Called after the metrics synced with the device: the place to act on device-side counters."""


class NonFiniteGuard:
    """Counts skipped (non-finite) steps on the device; raises once `limit` came in a row (read after a flush)."""

    def __init__(self, limit: int, device: torch.device):
        self.limit = limit
        self.streak = torch.zeros((), dtype=torch.long, device=device)
        self.skipped = torch.zeros((), dtype=torch.long, device=device)

    def update(self, finite: torch.Tensor):
        self.streak = (self.streak + 1) * (~finite)
        self.skipped = self.skipped + (~finite)

    def check(self, step: int, checkpoint_location: Path):
        streak = int(self.streak)
        if streak >= self.limit:
            last = (f"the last checkpoint, in {checkpoint_location}, holds the model from before them"
                    if checkpoint_location.exists() else "no checkpoint was written yet")
            raise NonFiniteTraining(
                f"step {step}: {streak} consecutive steps had a NaN/inf loss or gradient norm and were skipped "
                f"(optimization.max_nonfinite_steps={self.limit}); {last}. Lower optimization.lr, check the data, or "
                f"raise the limit.")
