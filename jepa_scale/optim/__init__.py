"""Optimisation leaves: AdamW with the device-side non-finite skip, schedules as pure functions, the EMA update."""
from jepa_scale.optim.adamw import load_optimizer_state, make_adamw, set_lr_wd, skip_next_step_if
from jepa_scale.optim.ema import ema_update
from jepa_scale.optim.schedules import Schedules

__all__ = ["load_optimizer_state", "make_adamw", "set_lr_wd", "skip_next_step_if", "ema_update", "Schedules"]
