"""Random erasing of a box in a normalised image [C, H, W] or clip [C, T, H, W], drawn from a numpy Generator.

'pixel' fills the box with standard normal noise (the data are normalised, so that is noise of the data's own
scale), 'rand' with one normal colour per channel, 'const' with zeros (the mean). In `cube` mode a clip gets one
box at the same place on every frame (fresh noise on each frame), the video eval's variant; otherwise every
frame gets its own box.
"""
from __future__ import annotations

import math

import numpy as np
import torch

MODES = ("pixel", "rand", "const")


class RandomErasing:
    def __init__(self, probability: float = 0.5, mode: str = "const", min_count: int = 1, max_count: int | None = None,
                 cube: bool = True, min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3,
                 max_aspect: float | None = None):
        if mode not in MODES:
            raise ValueError(f"random erasing mode {mode!r}: expected one of {MODES}")
        self.probability = probability
        self.mode = mode
        self.min_count = min_count
        self.max_count = max_count or min_count
        self.cube = cube
        self.area = (min_area, max_area)
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Erase in place and return x ([C, H, W] or [C, T, H, W] float)."""
        if x.dim() == 3:
            self._erase(x.unsqueeze(1), rng, tries=10)
        elif self.cube:
            self._erase(x, rng, tries=100)  # the clip variant retries longer before giving up on a box
        else:
            for t in range(x.shape[1]):
                self._erase(x[:, t:t + 1], rng, tries=10)
        return x

    def boxes(self, height: int, width: int, rng: np.random.Generator, tries: int = 10) -> list[tuple]:
        """(top, left, h, w) of the boxes of one call: none with probability 1 - p; else `count` boxes (uniform
        in [min_count, max_count]) sharing the area fraction U(min_area, max_area) / count, log-uniform
        aspect h / w; a box that does not fit strictly inside is redrawn, up to `tries` times, then dropped."""
        if rng.random() > self.probability:
            return []
        count = int(rng.integers(self.min_count, self.max_count + 1))
        found = []
        for _ in range(count):
            for _ in range(tries):
                area = rng.uniform(*self.area) * height * width / count
                aspect = math.exp(rng.uniform(*self.log_aspect))
                h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
                if h < height and w < width:
                    found.append((int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w))
                    break
        return found

    def _erase(self, clip: torch.Tensor, rng: np.random.Generator, tries: int) -> None:
        C, T, H, W = clip.shape
        for top, left, h, w in self.boxes(H, W, rng, tries):
            clip[:, :, top:top + h, left:left + w] = self._fill((C, T, h, w), rng, clip.dtype)

    def _fill(self, shape, rng: np.random.Generator, dtype) -> torch.Tensor:
        if self.mode == "pixel":
            noise = rng.standard_normal(shape, dtype=np.float32)
        elif self.mode == "rand":
            noise = rng.standard_normal(shape[:2] + (1, 1), dtype=np.float32)
        else:
            return torch.zeros((), dtype=dtype)
        return torch.from_numpy(noise).to(dtype)
