"""Backbones by `model.model_name`, and the model options every builder reads the same way."""
from __future__ import annotations

from jepa_scale.registry import Registry

BACKBONES = Registry("backbone", "model.model_name")


def build_backbone(cfg):
    """The encoder `cfg.model.model_name` names, built from the config (a Backbone)."""
    import jepa_scale.models  # noqa: F401  (the families register themselves on import)

    return BACKBONES.get(cfg.model.model_name)(cfg)


def attention_backend(cfg) -> str:
    # the official `use_sdpa: false` meant the plain formula
    return cfg.model.attention if cfg.meta.use_sdpa else "math"


def checkpoint_every(cfg) -> int:
    """Every how many units activations are recomputed (0: never)."""
    mode = cfg.distributed.activation_checkpointing
    if mode == "full" or cfg.model.use_activation_checkpointing:
        return 1
    return cfg.distributed.checkpoint_every if mode == "every_k" else 0
