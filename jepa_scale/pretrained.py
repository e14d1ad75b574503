"""`load_pretrained`: a trained V-JEPA (ours or the official code's) ready to use, in eval mode, float32."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from jepa_scale.checkpoint import CheckpointError, load_strict, read_checkpoint
from jepa_scale.config import PretrainConfig, load_config
from jepa_scale.models import Predictor, VisionTransformer, build_encoder, build_predictor


@dataclass
class Pretrained:
    encoder: VisionTransformer
    target_encoder: VisionTransformer
    predictor: Predictor
    config: PretrainConfig


def load_pretrained(config: str | Path | PretrainConfig, checkpoint: str | Path, device: str = "cpu",
                    weights_only: bool = True) -> Pretrained:
    """Build the models `config` describes (an official-format YAML is fine) and load `checkpoint` strictly:
    any missing, unexpected or mis-shaped key raises CheckpointError listing them."""
    cfg = config if isinstance(config, PretrainConfig) else load_config(config)
    ckpt = read_checkpoint(checkpoint, weights_only=weights_only)
    encoder = build_encoder(cfg)
    target = build_encoder(cfg)
    predictor = build_predictor(cfg, encoder)
    for key, module in (("encoder", encoder), ("target_encoder", target), ("predictor", predictor)):
        if key not in ckpt:
            raise CheckpointError(f"{checkpoint}: no '{key}' section (has: {', '.join(sorted(ckpt))})")
        load_strict(module, ckpt[key], key, str(checkpoint))
    mods = [m.to(device=device, dtype=torch.float32).eval().requires_grad_(False) for m in (encoder, target, predictor)]
    return Pretrained(*mods, config=cfg)
