"""What a recipe or task hands to an engine: which modules train, which only run forward, which follow an EMA."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn


@dataclass
class ModelSet:
    """Names are the checkpoint keys (the official layout's `encoder`, `predictor`, `target_encoder`).

    trainable: optimised, each clipped to the bound on its own (as the official loop clips encoder and predictor);
    frozen: forward only, never in the optimizer, sharded like the rest (an EMA target, a probe's backbone);
    ema: (frozen target, trainable source) pairs: target = m target + (1 - m) source after every step."""

    trainable: dict[str, nn.Module]
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    ema: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        both = set(self.trainable) & set(self.frozen)
        if both:
            raise ValueError(f"modules both trainable and frozen: {sorted(both)}")
        for target, source in self.ema:
            if target not in self.frozen or source not in self.trainable:
                raise ValueError(f"EMA pair ({target!r}, {source!r}) needs a frozen target and a trainable source")
        for module in self.frozen.values():
            module.requires_grad_(False)

    def all(self) -> dict[str, nn.Module]:
        """Every module, trainable ones first (the order of checkpoints and of sharding)."""
        return {**self.trainable, **self.frozen}

    def compile_units(self, backend: str):
        """torch.compile every module's units in place, before an engine wraps or shards them (parameter names
        unchanged, so checkpoints are the eager modules')."""
        for module in self.all().values():
            module.compile_units(backend)

    def map(self, fn) -> "ModelSet":
        """The same set with every module replaced by fn(name, module)."""
        return ModelSet({n: fn(n, m) for n, m in self.trainable.items()}, {n: fn(n, m) for n, m in self.frozen.items()},
                        list(self.ema))
