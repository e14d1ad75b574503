"""What the runtime (engines, FLOP counter, planner, checkpoints) may rely on in a model: nothing else.

Engines shard and checkpoint `shard_units()` one by one; the FLOP counter and the planner read the methods below;
nobody outside `models/` names a model's attributes. A new backbone implements `Backbone` and registers a builder
under its `model.model_name` in `jepa_scale.models.registry.BACKBONES`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn


@runtime_checkable
class Stack(Protocol):
    """A model made of a stack of residual units (transformer blocks, Mamba blocks)."""

    width: int  # residual-stream channels (the planner's activation model)

    def shard_units(self) -> list[nn.Module]:
        """The modules FSDP wraps (and activation checkpointing recomputes) one by one, in forward order."""

    def set_activation_checkpointing(self, every: int) -> None:
        """Recompute every `every`-th unit's activations in backward (1: all, 0: none)."""

    def recompute_fraction(self) -> float:
        """The fraction of units whose forward runs again in backward."""

    def units_flops(self, tokens: int, attention: bool = True) -> float:
        """FLOPs of one forward of all units over a sequence of `tokens` tokens (a multiply-add counts 2);
        attention=False leaves out the attention products."""

    def recompute_flops(self, tokens: int, attention: bool = True) -> float:
        """FLOPs the checkpointed units run again in backward over `tokens` tokens."""

    def attention_backend(self) -> str | None:
        """The attention kernel switch's value, or None for a model without attention (then the start-up report
        of attention kernels is skipped)."""

    def attention_head_dim(self) -> int:
        """Channels per attention head (the kernel choice depends on it); only asked where there is attention."""

    def compile_units(self, backend: str) -> None:
        """torch.compile each unit in place, keeping parameter names (so sharding still applies per unit)."""


@runtime_checkable
class Backbone(Stack, Protocol):
    embed_dim: int
    num_patches: int  # tokens of one whole input

    def forward(self, x: torch.Tensor, masks: torch.Tensor | list[torch.Tensor] | None = None):
        """[B, N, D] for masks None; [B, K, D] for a LongTensor [B, K] of kept tokens; a list for a list."""

    def embed_flops(self) -> float:
        """FLOPs of embedding one whole input into tokens."""
