"""The official pretraining transform, kept once as the yardstick of `augment_clip` (tests) and the baseline of the
benches: float32 at the source resolution, crop, bilinear resize, flip, then an out-of-place normalisation."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jepa_scale.data.augment import MEAN, STD, crop_params


def official_augment(frames: torch.Tensor, crop: int, scale, ratio, rng: np.random.Generator) -> torch.Tensor:
    """frames [T, H, W, 3] (uint8 or float) -> [3, T, crop, crop] float32, drawing from `rng` in the official order
    (crop window, then flip)."""
    buf = frames.float().permute(3, 0, 1, 2)  # C T H W, float32 at the source resolution
    top, left, h, w = crop_params(buf.shape[2], buf.shape[3], scale, ratio, rng)
    buf = F.interpolate(buf[:, :, top:top + h, left:left + w], size=(crop, crop), mode="bilinear",
                        align_corners=False)
    if rng.uniform() < 0.5:
        buf = buf.flip(-1)
    return (buf - torch.tensor(MEAN).view(3, 1, 1, 1) * 255.0) / (torch.tensor(STD).view(3, 1, 1, 1) * 255.0)
