"""`load_pretrained`: a trained model set (ours or the official code's) ready to use, in eval mode, float32."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from jepa_scale.checkpoint import CheckpointError, load_strict, read_checkpoint
from jepa_scale.config import load_config


@dataclass
class Pretrained:
    modules: dict[str, nn.Module]  # by checkpoint key: encoder, predictor, target_encoder for V-JEPA
    config: object

    def __getattr__(self, name):  # model.encoder, model.target_encoder, model.predictor
        modules = self.__dict__.get("modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(name)


def load_pretrained(config, checkpoint: str | Path, device: str = "cpu", weights_only: bool = True) -> Pretrained:
    """Build the models `config` (a path, or a loaded config) describes, through its recipe, and load
    `checkpoint` strictly: any missing, unexpected or mis-shaped key raises CheckpointError listing them."""
    from jepa_scale.recipes import RECIPES

    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    ckpt = read_checkpoint(checkpoint, weights_only=weights_only)
    recipe = RECIPES.get(cfg.recipe)(cfg)
    ckpt = recipe.official_state(ckpt, str(checkpoint))
    with torch.random.fork_rng(devices=[]):  # building seeds the global generator: leave the caller's alone
        modules = recipe.build_models().all()
    for key, module in modules.items():
        if key not in ckpt:
            raise CheckpointError(f"{checkpoint}: no '{key}' section (has: {', '.join(sorted(ckpt))})")
        load_strict(module, ckpt[key], key, str(checkpoint))
    placed = {k: m.to(device=device, dtype=torch.float32).eval().requires_grad_(False) for k, m in modules.items()}
    return Pretrained(placed, cfg)
