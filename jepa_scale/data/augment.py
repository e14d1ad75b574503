"""Pretraining augmentation: random resized crop, horizontal flip, normalisation.

Same distribution as the official VideoTransform, but the crop is a uint8 slice and the resize runs on uint8
(channels-last), so float32 exists only at the final crop size, never at the source resolution.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def crop_params(height: int, width: int, scale, ratio, rng: np.random.Generator, tries: int = 10):
    """(top, left, h, w): area fraction U(scale), aspect ratio log-uniform in ratio, then a centre-crop fallback."""
    area = height * width
    for _ in range(tries):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


_SCALE = torch.tensor([1.0 / (255.0 * s) for s in STD])
_SHIFT = torch.tensor([-m / s for m, s in zip(MEAN, STD)])


def normalize(clip: torch.Tensor) -> torch.Tensor:
    """[3, ...] 0..255 values (any dtype, any strides) -> contiguous ImageNet-normalised float32.
    One converting copy plus one fused multiply-add in place: (x / 255 - mean) / std == x * scale + shift."""
    shape = (3,) + (1,) * (clip.dim() - 1)
    out = torch.empty(clip.shape, dtype=torch.float32).copy_(clip)
    return out.mul_(_SCALE.view(shape)).add_(_SHIFT.view(shape))


def augment_clip(frames: torch.Tensor, crop_size: int, scale, ratio, rng: np.random.Generator,
                 flip: bool = True) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [3, T, crop, crop]."""
    T, H, W, _ = frames.shape
    top, left, h, w = crop_params(H, W, scale, ratio, rng)
    crop = frames[:, top:top + h, left:left + w].permute(0, 3, 1, 2)  # [T, 3, h, w], a channels-last view
    crop = F.interpolate(crop, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=False)
    if flip and rng.uniform() < 0.5:
        crop = crop.flip(-1)
    return normalize(crop.permute(1, 0, 2, 3))
