"""A batch of random inputs with a recipe's own masks, shaped as the data layer gives them: what FLOP and memory
accounting run on (also on the meta device) without reading data."""
from __future__ import annotations

import torch

from jepa_scale.data.batch import Batch, Masks


def example_input(cfg, key: str, batch: int, device) -> torch.Tensor:
    """Random input under `key`: "image" [B, 3, H, W], "video" or "video@{frames}" [B, 3, T, H, W], "audio" (AV-JEPA's
    spectrogram) [B, 1, mel bins, time frames]."""
    d = cfg.data
    if key == "audio":
        return torch.randn(batch, 1, cfg.audio.n_mels, cfg.audio.num_frames, device=device)
    if key == "image":
        return torch.randn(batch, 3, d.crop_size, d.crop_size, device=device)
    frames = int(key.split("@")[1]) if "@" in key else d.num_frames
    return torch.randn(batch, 3, frames, d.crop_size, d.crop_size, device=device)


def example_batch(cfg, recipe, batch: int = 1, device="cpu", counter: int = 0) -> Batch:
    """Masks drawn by the recipe's mask functions for batch `counter`; one input per masked modality."""
    masks = {k: fn(batch, counter, counter) for k, fn in recipe.mask_fns().items()}
    masks = {k: Masks([c.to(device) for c in m.context], [t.to(device) for t in m.target]) for k, m in masks.items()}
    inputs = {k: example_input(cfg, k, batch, device) for k in masks}
    return Batch(inputs, torch.zeros(batch, dtype=torch.long, device=device), counter, masks)
