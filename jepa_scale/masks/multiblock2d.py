"""I-JEPA multiblock 2-D masks with the official collator's semantics, draw for draw.

Per batch, two block sizes (targets, then context) from a generator seeded by the batch counter. The official seed
is a step counter shared by the loader workers of a rank: it starts at -1 and is incremented before use, so the
k-th batch a rank collates (k = 0, 1, ...) is seeded with k, across epochs, and a resumed run starts again at 0.
Ours is seeded with the global batch counter j (0 at the first step, restored on resume), so batch j gets the
sizes of the official's j-th batch in an uninterrupted run whose workers collated in order, and every rank and
micro-batch of a step shares them (one size per batch only spares padding, so sharing changes nothing else).

Per sample, the block locations. The official draws them from torch's unseeded global RNG; we draw them, in the
same order and with the same calls, from a generator seeded with `seed` (which the data layer derives from the run
seed, batch and micro-batch, see `jepa_scale.data.seeds.mask_seed`), so runs and resumes reproduce the masks. With
a generator in that state, our masks equal the official ones exactly.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from jepa_scale.data.batch import Masks

logger = logging.getLogger(__name__)
RELAX_EVERY = 20  # failed draws before one more acceptable region is dropped (official)


class MultiBlock2DMasks:
    """`(batch_size, batch_counter, seed) -> Masks(context=[nenc x [B, K_enc]], target=[npred x [B, K_pred]])`:
    int64 flat patch indices (row-major over the H' x W' grid), each row sorted ascending, every list of a batch
    cut to that batch's shortest (which keeps the lowest indices, so the bottom and right tokens go).

    Official behaviours kept: one uniform draw sets both a block's scale and its aspect ratio; the context block is
    square (aspect 1); blocks are at most H'-1 x W'-1 and their corner bound is exclusive, so none touches the last
    row or column; a block is kept when it has more than `min_keep` tokens; the context is drawn after the targets
    inside the product of their complements, and after every 20 failed draws the last remaining complement is
    dropped from that product (so a relaxed context may cover target tokens). Where the official would loop
    forever (a block of `min_keep` tokens or fewer even unconstrained) we raise ValueError instead.
    """

    @classmethod
    def from_config(cls, mask, crop_size) -> MultiBlock2DMasks:
        """From an I-JEPA `mask:` section (a mapping or an object with its keys as attributes) and the crop size."""
        def get(key):
            return mask[key] if isinstance(mask, dict) else getattr(mask, key)

        return cls(crop_size, get("patch_size"), tuple(get("enc_mask_scale")), tuple(get("pred_mask_scale")),
                   tuple(get("aspect_ratio")), get("num_enc_masks"), get("num_pred_masks"), get("min_keep"),
                   get("allow_overlap"))

    def __init__(self, input_size, patch_size: int, enc_mask_scale=(0.85, 1.0), pred_mask_scale=(0.15, 0.2),
                 aspect_ratio=(0.75, 1.5), nenc: int = 1, npred: int = 4, min_keep: int = 10,
                 allow_overlap: bool = False):
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.height, self.width = size[0] // patch_size, size[1] // patch_size
        self.enc_mask_scale, self.pred_mask_scale = tuple(enc_mask_scale), tuple(pred_mask_scale)
        self.aspect_ratio = tuple(aspect_ratio)
        self.nenc, self.npred, self.min_keep, self.allow_overlap = nenc, npred, min_keep, allow_overlap

    def _block_size(self, g: torch.Generator, scale, aspect_ratio) -> tuple[int, int]:
        u = torch.rand(1, generator=g).item()  # one draw for both: scale and aspect move together (official)
        keep = int(self.height * self.width * (scale[0] + u * (scale[1] - scale[0])))
        ar = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
        h = min(round(math.sqrt(keep * ar)), self.height - 1)
        w = min(round(math.sqrt(keep / ar)), self.width - 1)
        return h, w

    def block_sizes(self, batch_counter: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(target (h, w), context (h, w)) of batch `batch_counter`, in the official draw order."""
        g = torch.Generator().manual_seed(batch_counter)
        target = self._block_size(g, self.pred_mask_scale, self.aspect_ratio)
        return target, self._block_size(g, self.enc_mask_scale, (1.0, 1.0))

    def _block(self, size, g: torch.Generator, regions=None) -> tuple[np.ndarray, np.ndarray]:
        """(sorted flat indices of one block, its box's complement); `regions` are the acceptable regions."""
        h, w = size
        tries = failures = 0
        while True:
            # exclusive upper bounds, as the official: the last row and column are never a block's
            top = int(torch.randint(0, self.height - h, (1,), generator=g))
            left = int(torch.randint(0, self.width - w, (1,), generator=g))
            box = np.zeros((self.height, self.width), dtype=bool)
            box[top:top + h, left:left + w] = True
            kept = box
            if regions is not None:
                for region in regions[:max(len(regions) - tries, 0)]:
                    kept = kept & region
            idx = np.flatnonzero(kept)
            if len(idx) > self.min_keep:
                return idx, ~box
            failures += 1
            if failures == RELAX_EVERY:
                tries, failures = tries + 1, 0
                logger.warning("no valid mask block in %d draws: dropping the last %d acceptable regions",
                               RELAX_EVERY, tries)

    def _check(self, sizes):
        for name, (h, w) in zip(("target", "context"), sizes):
            if h * w <= self.min_keep:  # even unconstrained no draw is valid: the official loops forever
                raise ValueError(f"{name} blocks of {h}x{w} on a {self.height}x{self.width} grid have at most "
                                 f"min_keep={self.min_keep} tokens: raise the mask scale or lower min_keep")

    def __call__(self, batch_size: int, batch_counter: int, seed: int) -> Masks:
        sizes = self.block_sizes(batch_counter)
        self._check(sizes)
        g = torch.Generator().manual_seed(seed)
        targets, contexts = [], []
        for _ in range(batch_size):
            blocks = [self._block(sizes[0], g) for _ in range(self.npred)]
            regions = None if self.allow_overlap else [complement for _, complement in blocks]
            targets.append([idx for idx, _ in blocks])
            contexts.append([self._block(sizes[1], g, regions)[0] for _ in range(self.nenc)])
        return Masks(_cut(contexts, self.nenc), _cut(targets, self.npred))


def _cut(per_sample: list[list[np.ndarray]], n: int) -> list[torch.Tensor]:
    """n tensors [B, K], K the shortest list of the batch over all n (the official cuts to one length per kind)."""
    k = min(len(idx) for blocks in per_sample for idx in blocks)
    return [torch.from_numpy(np.stack([blocks[i][:k] for blocks in per_sample])).long() for i in range(n)]
