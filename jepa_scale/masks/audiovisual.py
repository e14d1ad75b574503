"""AV-JEPA's masks (family.md 4.4), one mask function per modality, both over the same mask configurations.

Video: V1's multiblock 3-D masks. Audio: per configuration, `audio_num_blocks` boxes of `audio_block_size`
(frequency x time tokens) at random places on the spectrogram's token grid; the targets are their union, the context
its complement. Upstream lets an audio context come out empty, and then cuts the whole batch's audio context to
nothing; here an empty audio context is redrawn, as V1 redraws an empty video context. Each list is cut to the
batch minimum, as upstream does per modality.

`hide: video` (or `audio`) in a configuration makes every token of that modality a target and none context, and
the other modality all context and no target: the hidden one is predicted from the other alone.
"""
from __future__ import annotations

import torch

from jepa_scale.data.batch import Masks
from jepa_scale.masks.multiblock3d import MAX_REDRAWS, MaskGenerator


class AudioBlocks:
    """(context, target) [B, K] of one configuration over a (frequency, time) token grid."""

    def __init__(self, grid: tuple[int, int], block: tuple[int, int], num_blocks: int):
        self.grid, self.block, self.num_blocks = tuple(grid), tuple(block), num_blocks

    def _draw(self, g: torch.Generator) -> torch.Tensor:
        (F, T), (f, t) = self.grid, self.block
        keep = torch.ones(F, T, dtype=torch.bool)
        for _ in range(self.num_blocks):
            top = int(torch.randint(0, F - f + 1, (1,), generator=g))
            left = int(torch.randint(0, T - t + 1, (1,), generator=g))
            keep[top:top + f, left:left + t] = False
        return keep.flatten()

    def __call__(self, batch_size: int, batch_counter: int, g: torch.Generator):
        ctx, tgt = [], []
        for _ in range(batch_size):
            for _ in range(MAX_REDRAWS):
                keep = self._draw(g)
                if keep.any():
                    break
            else:
                raise ValueError(f"{self.num_blocks} audio blocks of {self.block} tokens cover the whole {self.grid} "
                                 f"grid in {MAX_REDRAWS} draws: lower mask.audio_num_blocks or audio_block_size")
            ctx.append(torch.nonzero(keep).squeeze(1))
            tgt.append(torch.nonzero(~keep).squeeze(1))
        k_ctx, k_tgt = min(len(c) for c in ctx), min(len(t) for t in tgt)
        return torch.stack([c[:k_ctx] for c in ctx]), torch.stack([t[:k_tgt] for t in tgt])


class Whole:
    """A configuration that hides a modality: `hidden` gives no context and every token as target; otherwise every
    token is context and none is a target."""

    def __init__(self, num_tokens: int, hidden: bool):
        self.num_tokens, self.hidden = num_tokens, hidden

    def __call__(self, batch_size: int, batch_counter: int, g: torch.Generator):
        every = torch.arange(self.num_tokens).expand(batch_size, -1).contiguous()
        none = torch.zeros(batch_size, 0, dtype=torch.long)
        return (none, every) if self.hidden else (every, none)


class ModalityMasks:
    """The mask function of one modality: Masks with a (context, target) pair per configuration."""

    def __init__(self, generators: list):
        self.generators = generators

    def __call__(self, batch_size: int, batch_counter: int, seed: int) -> Masks:
        g = torch.Generator().manual_seed(seed)
        pairs = [gen(batch_size, batch_counter, g) for gen in self.generators]
        return Masks([p[0] for p in pairs], [p[1] for p in pairs])


def audiovisual_mask_fns(cfg) -> dict:
    """{"video": ..., "audio": ...} for an AVJEPAConfig."""
    d, grid = cfg.data, cfg.audio_grid
    n_video = (d.crop_size // d.patch_size) ** 2 * (d.num_frames // d.tubelet_size)
    video, audio = [], []
    for m in cfg.mask:
        if m.hide == "none":
            video.append(MaskGenerator.from_config(m, d.crop_size, d.num_frames, d.patch_size, d.tubelet_size))
            audio.append(AudioBlocks(grid, tuple(m.audio_block_size), m.audio_num_blocks or m.num_blocks))
        else:
            video.append(Whole(n_video, hidden=m.hide == "video"))
            audio.append(Whole(grid[0] * grid[1], hidden=m.hide == "audio"))
    return {"video": ModalityMasks(video), "audio": ModalityMasks(audio)}
