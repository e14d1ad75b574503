"""Frozen-eval transforms (attentive probe): video train / eval views and image train / eval views.

Each transform is `transform(frames, rng) -> list of float32 views`, ImageNet-normalised: a clip view is
[3, T, crop, crop] (input uint8 [T, H, W, 3]), an image view [3, res, res] (input uint8 [H, W, 3]). Randomness
comes only from the numpy Generator passed in; the eval transforms take it and ignore it. Resizes run on uint8
(torch rounds, as the reference's cv2 / PIL resizes do), so float32 exists only at the crop size, except for the
train clip, whose crop window is normalised before its bilinear resize as the reference orders it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jepa_scale.data.augment import MEAN, crop_params, normalize
from jepa_scale.data.rand_augment import AutoAugment, RandAugment
from jepa_scale.data.random_erasing import RandomErasing

# the geometric AutoAugment steps of the image eval fill with the ImageNet mean in 0..255: (124, 116, 104)
IMAGENET_FILL = tuple(min(255, round(255 * m)) for m in MEAN)


def short_side_size(crop: int) -> int:
    """The single-view eval resize: 256 for 224, 438 for 384."""
    return int(crop * 256 / 224)


def resize_short_side(frames: torch.Tensor, size: int, mode: str, antialias: bool) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> shorter side `size`, longer side int(size * long / short) (truncated)."""
    H, W = frames.shape[1:3]
    if min(H, W) == size:
        return frames
    out = (int(size * H / W), size) if W < H else (size, int(size * W / H))
    x = frames.permute(0, 3, 1, 2)  # a channels-last view: torch resizes uint8 in that layout directly
    x = F.interpolate(x, size=out, mode=mode, align_corners=False, antialias=antialias)
    return x.permute(0, 2, 3, 1)


def center_crop(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[T, H, W, 3] -> [T, size, size, 3], offsets rounded like the reference (Python round of half the margin)."""
    H, W = frames.shape[1:3]
    top, left = round((H - size) / 2.0), round((W - size) / 2.0)
    return frames[:, top:top + size, left:left + size]


def _uint8(frames) -> torch.Tensor:
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {frames.dtype}")
    return frames


def _clip_view(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> normalised float32 [3, T, H, W]."""
    return normalize(frames.permute(3, 0, 1, 2))


class VideoTrainTransform:
    """RandAugment (one op list and magnitude for all frames) -> to float and normalise -> random resized crop
    with a bilinear resize -> random erasing of one box through all frames. No flip (the eval sets none)."""

    def __init__(self, crop: int = 224, scale=(0.08, 1.0), ratio=(0.75, 4 / 3),
                 auto_augment: str | None = "rand-m7-n4-mstd0.5-inc1", reprob: float = 0.25):
        self.crop, self.scale, self.ratio = crop, scale, ratio
        # the reference sizes translate_const from the crop, though the rand op set translates relatively
        self.rand_augment = (RandAugment.from_spec(auto_augment, translate_const=int(0.45 * crop),
                                                   interpolation="bicubic") if auto_augment else None)
        self.erase = RandomErasing(reprob, mode="pixel", max_count=1, cube=True) if reprob > 0 else None

    def __call__(self, frames, rng: np.random.Generator) -> list[torch.Tensor]:
        frames = _uint8(frames)
        if self.rand_augment is not None:
            frames = self.rand_augment(frames, rng)
        H, W = frames.shape[1:3]
        top, left, h, w = crop_params(H, W, self.scale, self.ratio, rng)
        # normalising only the window is the reference's order (normalise, then crop) without the rest of the frame
        window = _clip_view(frames[:, top:top + h, left:left + w])  # [3, T, h, w]: 3 images of T channels
        view = F.interpolate(window, size=(self.crop, self.crop), mode="bilinear", align_corners=False)
        if self.erase is not None:
            self.erase(view, rng)
        return [view]


class VideoEvalTransform:
    """One view: short side to int(crop * 256 / 224), centre crop. Several: short side to `crop`, then
    `num_views` crops spaced evenly along the longer side (left..right, or top..bottom for portrait frames).
    Bilinear resizes without antialiasing, as the reference's cv2 INTER_LINEAR."""

    def __init__(self, crop: int = 224, num_views: int = 1):
        if num_views < 1:
            raise ValueError(f"num_views must be at least 1, got {num_views}")
        self.crop, self.num_views = crop, num_views

    def __call__(self, frames, rng: np.random.Generator | None = None) -> list[torch.Tensor]:
        frames = _uint8(frames)
        if self.num_views == 1:
            frames = resize_short_side(frames, short_side_size(self.crop), "bilinear", antialias=False)
            return [_clip_view(center_crop(frames, self.crop))]
        frames = resize_short_side(frames, self.crop, "bilinear", antialias=False)
        H, W = frames.shape[1:3]
        step = (max(H, W) - self.crop) // (self.num_views - 1)
        views = []
        for i in range(self.num_views):
            s = i * step
            crop = frames[:, s:s + self.crop] if H > W else frames[:, :, s:s + self.crop]
            views.append(_clip_view(crop))
        return views


class ImageTrainTransform:
    """Random resized crop (bicubic) -> horizontal flip -> AutoAugment 'original' on uint8 -> normalise ->
    random erasing: the order of the image eval's timm train transform. The crop's resize antialiases
    (torch's antialiased bicubic is PIL's resize kernel)."""

    def __init__(self, res: int = 224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5,
                 auto_augment: str | None = "original", reprob: float = 0.25):
        self.res, self.scale, self.ratio, self.hflip = res, scale, ratio, hflip
        self.auto_augment = (AutoAugment(auto_augment, fill=IMAGENET_FILL, interpolation="bicubic")
                             if auto_augment else None)
        self.erase = RandomErasing(reprob, mode="pixel", max_count=1) if reprob > 0 else None

    def __call__(self, image, rng: np.random.Generator) -> list[torch.Tensor]:
        image = _uint8(image)
        H, W, _ = image.shape
        top, left, h, w = crop_params(H, W, self.scale, self.ratio, rng)
        x = image[None, top:top + h, left:left + w].permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(self.res, self.res), mode="bicubic", align_corners=False, antialias=True)
        if rng.random() < self.hflip:
            x = x.flip(-1)
        x = x.permute(0, 2, 3, 1)  # [1, res, res, 3]: a one-frame clip for AutoAugment
        if self.auto_augment is not None:
            x = self.auto_augment(x, rng)
        view = normalize(x[0].permute(2, 0, 1))
        if self.erase is not None:
            self.erase(view, rng)
        return [view]


class ImageEvalTransform:
    """Short side to int(res * 256 / 224), centre crop `res`. The reference uses torchvision's Resize with its
    default interpolation, bilinear with antialiasing on PIL images; `interpolation` can say 'bicubic'."""

    def __init__(self, res: int = 224, interpolation: str = "bilinear"):
        self.res, self.interpolation = res, interpolation

    def __call__(self, image, rng: np.random.Generator | None = None) -> list[torch.Tensor]:
        x = resize_short_side(_uint8(image)[None], short_side_size(self.res), self.interpolation, antialias=True)
        return [normalize(center_crop(x, self.res)[0].permute(2, 0, 1))]
