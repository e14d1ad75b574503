"""V-JEPA multiblock 3-D masks with the official collator's semantics.

One block size per batch, from a generator seeded by the batch counter (the official collator shares that
counter across loader workers, so every rank and worker draws the same size for the same batch). Block placement
is per sample; we draw it from a generator the caller seeds from (run seed, batch, micro-batch), which makes the
masks a function of the batch position instead of a worker's global RNG state (so resumes reproduce them).

V-JEPA 2 (src/masks/multiseq_multiblock3d.py) draws exactly as V1 and adds three options, all false in the
released configs: `full_complement` (the targets become the complement of the cut context), `pred_full_complement`
(the context becomes the complement of the cut targets; full_complement wins when both are set, as the official
`if ... elif`) and `inv_block` (the two roles are swapped at the end). Order, as the official generator: both lists
are first cut to the batch minimum (the context further to `max_keep`), then the complement is taken of the cut
list, then inv_block swaps. So with full_complement the targets are N - K_ctx tokens, every token the cut context
does not hold, including the late context tokens the cut dropped; with pred_full_complement the context is
N - K_tgt tokens and ignores `max_keep`; with inv_block the returned context is not capped by `max_keep` either.
One V-JEPA 2 frames-per-clip group gets its own MultiBlockMasks (num_frames = the group's fpc).
"""
from __future__ import annotations

import math

import torch

from jepa_scale.data.batch import Masks

MAX_REDRAWS = 1000


class MaskGenerator:
    def __init__(self, crop_size: int, num_frames: int, patch_size: int, tubelet_size: int, spatial_scale,
                 temporal_scale, aspect_ratio, num_blocks: int, max_temporal_keep: float = 1.0, max_keep=None,
                 full_complement: bool = False, pred_full_complement: bool = False, inv_block: bool = False):
        self.height = self.width = crop_size // patch_size
        self.duration = num_frames // tubelet_size
        self.spatial_scale, self.temporal_scale = tuple(spatial_scale), tuple(temporal_scale)
        self.aspect_ratio, self.num_blocks = tuple(aspect_ratio), num_blocks
        self.max_context_duration = max(1, int(self.duration * max_temporal_keep))
        self.max_keep = max_keep
        self.full_complement, self.pred_full_complement, self.inv_block = full_complement, pred_full_complement, inv_block

    @classmethod
    def from_config(cls, m, crop_size: int, num_frames: int, patch_size: int, tubelet_size: int) -> "MaskGenerator":
        """The generator of one `mask:` entry (a MaskConfig)."""
        return cls(crop_size, num_frames, patch_size, tubelet_size, m.spatial_scale, m.temporal_scale,
                   m.aspect_ratio, m.num_blocks, m.max_temporal_keep, m.max_keep, m.full_complement,
                   m.pred_full_complement, m.inv_block)

    @property
    def num_tokens(self) -> int:
        return self.duration * self.height * self.width

    def _complement(self, rows: torch.Tensor) -> torch.Tensor:
        """[B, K] sorted token indices -> [B, N - K]: the tokens each row does not hold, sorted."""
        keep = torch.ones(rows.shape[0], self.num_tokens, dtype=torch.bool)
        keep.scatter_(1, rows, False)
        return torch.nonzero(keep)[:, 1].reshape(rows.shape[0], -1)

    def block_size(self, batch_counter: int) -> tuple[int, int, int]:
        g = torch.Generator().manual_seed(batch_counter)

        def uniform(lo_hi):
            return lo_hi[0] + torch.rand(1, generator=g).item() * (lo_hi[1] - lo_hi[0])

        t = max(1, int(self.duration * uniform(self.temporal_scale)))
        keep = int(self.height * self.width * uniform(self.spatial_scale))
        ar = uniform(self.aspect_ratio)
        h = min(int(round(math.sqrt(keep * ar))), self.height)
        w = min(int(round(math.sqrt(keep / ar))), self.width)
        return t, h, w

    def _sample_context(self, size, g: torch.Generator) -> torch.Tensor:
        """[T', H', W'] bool: True where the token stays in the context."""
        t, h, w = size
        keep = torch.ones(self.duration, self.height, self.width, dtype=torch.bool)
        for _ in range(self.num_blocks):
            top = int(torch.randint(0, self.height - h + 1, (1,), generator=g))
            left = int(torch.randint(0, self.width - w + 1, (1,), generator=g))
            start = int(torch.randint(0, self.duration - t + 1, (1,), generator=g))
            keep[start:start + t, top:top + h, left:left + w] = False
        if self.max_context_duration < self.duration:
            keep[self.max_context_duration:] = False
        return keep

    def __call__(self, batch_size: int, batch_counter: int, g: torch.Generator):
        """-> (context [B, K_ctx], target [B, K_tgt]) LongTensors, sorted, cut to the batch minimum (then, with the
        V2 options, completed and/or swapped: see the module docstring)."""
        size = self.block_size(batch_counter)
        ctx, tgt = [], []
        for _ in range(batch_size):
            for _ in range(MAX_REDRAWS):  # an empty context is redrawn
                keep = self._sample_context(size, g).flatten()
                c = torch.nonzero(keep).squeeze(1)
                if len(c):
                    break
            else:  # the official collator would loop forever here
                raise ValueError(f"mask blocks of size {size} (t, h, w) cover the whole {self.duration}x{self.height}"
                                 f"x{self.width} token grid in {MAX_REDRAWS} draws: lower spatial_scale or num_blocks")
            ctx.append(c)
            tgt.append(torch.nonzero(~keep).squeeze(1))
        k_ctx = min(len(c) for c in ctx)
        if self.max_keep is not None:
            k_ctx = min(k_ctx, self.max_keep)
        k_tgt = min(len(t) for t in tgt)
        ctx, tgt = torch.stack([c[:k_ctx] for c in ctx]), torch.stack([t[:k_tgt] for t in tgt])
        # V2: the complement of the *cut* list (the official generator cuts first, then completes)
        if self.full_complement:
            tgt = self._complement(ctx)
        elif self.pred_full_complement:
            ctx = self._complement(tgt)
        return (tgt, ctx) if self.inv_block else (ctx, tgt)


class MultiBlockMasks:
    """All mask configurations of a run; `__call__` gives Masks with one (context, target) pair per
    configuration. This is the mask function a recipe injects into the data layer."""

    @classmethod
    def for_video(cls, cfg) -> "MultiBlockMasks":
        d = cfg.data
        return cls(cfg.mask, d.crop_size, d.num_frames, d.patch_size, d.tubelet_size)

    def __init__(self, mask_cfgs, crop_size: int, num_frames: int, patch_size: int, tubelet_size: int):
        self.generators = [MaskGenerator.from_config(m, crop_size, num_frames, patch_size, tubelet_size)
                           for m in mask_cfgs]

    def __call__(self, batch_size: int, batch_counter: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        pairs = [gen(batch_size, batch_counter, g) for gen in self.generators]
        return Masks([p[0] for p in pairs], [p[1] for p in pairs])
