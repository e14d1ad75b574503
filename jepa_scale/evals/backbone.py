"""The frozen backbone of an eval: built from the config's pretrain section as pretraining builds it (the BACKBONES
registry; AV-JEPA's joint encoder for an `audio:` section), and loaded strictly from an official-layout file, one
of our run folders (sharded checkpoints exported through the checkpointer), or nothing (a randomly initialised
backbone, the baseline a probe is compared with)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from jepa_scale.checkpoint import CheckpointError, load_strict, read_checkpoint
from jepa_scale.config.avjepa_schema import AVJEPAConfig
from jepa_scale.models import BACKBONES
from jepa_scale.models.audiovisual import build_audiovisual_vit

log = logging.getLogger(__name__)


def backbone_builder(cfg):
    """The function pretraining builds this encoder with. An AV-JEPA config's model_name is a plain ViT preset,
    which the registry would build video-only: its recipe's joint encoder is built instead."""
    if isinstance(cfg, AVJEPAConfig):
        return build_audiovisual_vit
    return BACKBONES.get(cfg.model.model_name)


def build_encoder(spec, seed: int = 0) -> nn.Module:
    """The backbone the spec describes, initialised as pretraining initialises it (seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return backbone_builder(spec.encoder_cfg)(spec.encoder_cfg)


def read_pretrained(path: str | Path) -> dict:
    """An official-layout checkpoint dict from a file, or from a run folder of ours (its newest intact checkpoint;
    a sharded one is consolidated first)."""
    path = Path(path)
    if path.is_dir():
        from jepa_scale.checkpoint.convert import export_run

        with tempfile.TemporaryDirectory() as tmp:
            return read_checkpoint(export_run(path, Path(tmp) / "export.pth.tar"))
    return read_checkpoint(path)


def encoder_state(ckpt: dict, key: str, fallback: str | None, source: str) -> dict:
    """The encoder's section: `key`, or (V1) `fallback` when the file has no `key`, said in the log."""
    if key in ckpt:
        return ckpt[key]
    if fallback and fallback in ckpt:
        log.warning("%s has no '%s' section: using '%s', as the official V1 eval does", source, key, fallback)
        return ckpt[fallback]
    raise CheckpointError(f"{source}: no '{key}' section (pretrain checkpoint_key; has: {', '.join(sorted(ckpt))})")


# model keys that change a backbone's forward but not its weights: a strict load cannot catch a mismatch
FORWARD_ONLY_KEYS = ("mamba_divide_out",)


def check_run_options(spec, source: str):
    """A checkpoint inside one of our run folders: its config.yaml must agree with the eval on FORWARD_ONLY_KEYS."""
    run_config = Path(source).parent / "config.yaml" if source else None
    if run_config is None or not run_config.is_file():
        return
    trained = (yaml.safe_load(run_config.read_text()) or {}).get("model") or {}
    for key in FORWARD_ONLY_KEYS:
        ours = getattr(spec.encoder_cfg.model, key)
        if key in trained and trained[key] != ours:
            raise CheckpointError(f"{run_config}: the run trained with model.{key}={trained[key]!r}, the eval "
                                  f"builds {ours!r}: set pretrain.{key}: {trained[key]!r}")


def load_encoder(spec, checkpoint: str | None = None, seed: int = 0) -> nn.Module:
    """The frozen encoder in eval mode: `checkpoint` (default: the spec's) loaded strictly; "" keeps the random
    init. Any missing, unexpected or mis-shaped key raises CheckpointError naming them."""
    source = spec.checkpoint if checkpoint is None else checkpoint
    if source and not Path(source).exists():  # before building: a ViT-g takes a while
        placeholder = " (the official config's placeholder)" if "your_" in str(source) else ""
        raise CheckpointError(f"{source}: pretrained checkpoint not found{placeholder}; set it with "
                              f"{spec.checkpoint_from} (--set ...)")
    check_run_options(spec, source)
    encoder = build_encoder(spec, seed)
    if source:
        ckpt = read_pretrained(source)
        load_strict(encoder, encoder_state(ckpt, spec.checkpoint_key, spec.key_fallback, str(source)),
                    spec.checkpoint_key, str(source))
    else:
        log.warning("no pretrained checkpoint: the probe runs on a randomly initialised backbone")
    return encoder.eval().requires_grad_(False)
