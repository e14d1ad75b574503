"""The recipe protocol: everything that differs between JEPA methods, behind a few calls."""
from __future__ import annotations

from typing import Protocol

import torch

from jepa_scale.registry import Registry

RECIPES = Registry("recipe", "app")


class Recipe(Protocol):
    config_class: type  # the config root this method reads (its own sections and keys)
    checkpoint_prefix: str  # of the state-dict keys in the official single-file layout it writes
    logged: tuple[str, ...]  # names of the scalars `loss` returns besides the loss, logged in this order

    def __init__(self, cfg): ...

    def build_models(self):
        """The ModelSet (trainable, frozen, EMA pairs), initialised as the official code does (seeded)."""

    def optimizer(self, modules: dict) -> torch.optim.Optimizer:
        """The optimizer over the placed modules, parameter groups in the official order (so optimizer state dicts
        line up with official checkpoints)."""

    def mask_fns(self) -> dict:
        """modality -> mask function (batch_size, batch_counter, seed) -> Masks, injected into the data layer."""

    def open_streams(self, cfg, micro_indices: list[int], num_micro: int, device, skip_report=None,
                     decoder=None) -> list:
        """One data stream per micro-batch index of this rank (cfg.data.batch_size is the micro-batch size)."""

    def official_state(self, ckpt: dict, source: str) -> dict:
        """The official checkpoint dict `ckpt` (read from `source`) with the documented differences between the
        released files and our modules resolved by name (e.g. V2's stale pos_embed); strict loading follows."""

    def loss(self, models: dict, batch) -> tuple[torch.Tensor, dict]:
        """(loss, {name in `logged`: 0-d tensor}) of one micro-batch; `models` are what the engine calls."""

    def step_flops(self, modules: dict, batch) -> float:
        """FLOPs of one training step on `batch` (forward, backward, recomputation), host-side numbers."""

    def tokens_per_sample(self, modules: dict) -> int:
        """Input tokens of one sample (the tokens/s figure)."""

    def mask_shapes(self, masks: dict) -> list[tuple[int, int]]:
        """(context tokens, target tokens) of every predictor sequence one sample's masks make (`masks`: modality ->
        Masks, as in `Batch.masks`)."""

    def trained_sequences(self, mask_shapes: list[tuple[int, int]]) -> list[tuple[str, int]]:
        """(module name, tokens) of every forward that keeps activations for backward, per sample, for the
        (context, target) token counts of each mask configuration (the planner's activation model)."""
