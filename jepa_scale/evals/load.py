"""`load_probe`: trained probe heads (ours or the official code's) ready to use, with their frozen encoder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from jepa_scale.checkpoint import read_checkpoint
from jepa_scale.checkpoint.probe_layout import load_probe_checkpoint
from jepa_scale.config import load_config
from jepa_scale.evals.backbone import build_encoder, load_encoder
from jepa_scale.evals.spec import eval_spec
from jepa_scale.models.attentive_pooler import build_probe


@dataclass
class LoadedProbe:
    classifiers: list[nn.Module]  # each maps features [B, N, D] to logits [B, classes]; grids in config order
    encoder: nn.Module | None  # the frozen backbone, when the config's pretrained checkpoint exists
    spec: object  # the resolved eval config (jepa_scale.evals.spec.EvalSpec)

    @property
    def classifier(self) -> nn.Module:
        return self.classifiers[0]


def load_probe(config, checkpoint: str | Path, device: str = "cpu") -> LoadedProbe:
    """Build the probe(s) an eval config (a path, or a loaded config; official V1/V2 or ours) describes and load
    `checkpoint` (an official or our probe file, or an eval output folder holding one) strictly: any missing,
    unexpected or mis-shaped key, or a head count that differs from the config's, raises CheckpointError."""
    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    spec = eval_spec(cfg)
    path = Path(checkpoint)
    if path.is_dir():
        path = path / spec.latest_name
    encoder = load_encoder(spec) if spec.checkpoint and Path(spec.checkpoint).exists() else None
    shape = encoder or build_encoder(spec)  # the encoder's width and heads size the probe
    heads = spec.probe_num_heads or shape.num_heads
    with torch.random.fork_rng(devices=[]):
        classifiers = [build_probe(spec.probe_layout, shape.embed_dim, heads, spec.probe_depth, spec.num_classes)
                       for _ in spec.heads]
    load_probe_checkpoint(classifiers, read_checkpoint(path), str(path))
    place = lambda m: m.to(device=device, dtype=torch.float32).eval().requires_grad_(False)  # noqa: E731
    return LoadedProbe([place(c) for c in classifiers], place(encoder) if encoder is not None else None, spec)
