"""The one place that derives the random seeds of a (batch, micro-batch, sample).

Micro-batch m of rank r is global micro-batch r * accum + m out of world_size * accum: the same samples, clips,
augmentations and masks whatever the split between ranks and accumulation steps, and after any resume. (Which
samples make global batch j is `SampleOrder`'s pure function of (seed, j).)
"""
from __future__ import annotations

import numpy as np

MASK_NAMESPACE = 1 << 20  # the sample position slot of the mask draw: no sample of a batch has this position
# the batch slot of evaluation samples: no training run reaches this batch, so eval draws never repeat training ones
# (a separate slot, not a shorter seed list: numpy gives [a, b, c] and [a, b, c, 0] the same stream)
EVAL_NAMESPACE = 1 << 40


def micro_batch_ids(rank: int, accum: int) -> list[int]:
    """The global micro-batch indices that rank `rank` trains on, accumulating `accum` per step."""
    return [rank * accum + m for m in range(accum)]


def sample_rng(seed: int, batch: int, micro: int, position: int) -> np.random.Generator:
    """Clip sampling and augmentation of one sample."""
    return np.random.default_rng([seed, batch, micro, position])


def eval_sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Clip sampling, augmentation and replacement draws of evaluation sample `index` in `epoch`: the same
    whichever worker or rank loads it, and after a resume."""
    return np.random.default_rng([seed, EVAL_NAMESPACE, epoch, index])


# masked modalities besides the first (video or image): their own placement seeds (audio blocks are not drawn from
# the video blocks' stream)
MODALITY_SLOTS = {"audio": 1}


def mask_seed(seed: int, batch: int, micro: int, group: int = 0, modality: int = 0) -> int:
    """Mask placement of one micro-batch (block sizes follow the batch counter alone, as the official collator);
    `group` > 0: of the micro-batch's V-JEPA 2 frames-per-clip group `group` (group 0 has the micro-batch's seed);
    `modality` > 0: of that MODALITY_SLOTS entry."""
    key = [seed, batch, micro, MASK_NAMESPACE] + ([group] if group or modality else []) + \
        ([modality] if modality else [])
    return int(np.random.default_rng(key).integers(1 << 62))


def draw_masks(mask_fns: dict, batch_size: int, seed: int, batch: int, micro: int,
               groups: dict | None = None) -> dict:
    """modality -> Masks for one micro-batch, from the mask functions a recipe injects (none for a probe).

    `groups` (input key -> number of clips, for every frames-per-clip group in `DataConfig.fpc_groups()` order)
    when a micro-batch is split by frames per clip: the mask function of a group's key draws for that group's clips
    only, with the placement seed of the group's index, and a group without clips gets no masks. Every other key
    draws for the whole batch with the micro-batch's seed. One group ("video") draws as without `groups`."""
    groups = groups or {}
    index = {key: i for i, key in enumerate(groups)}
    out = {}
    for name, fn in mask_fns.items():
        if name in groups:
            if groups[name]:
                out[name] = fn(groups[name], batch, mask_seed(seed, batch, micro, index[name]))
        else:
            out[name] = fn(batch_size, batch, mask_seed(seed, batch, micro, modality=MODALITY_SLOTS.get(name, 0)))
    return out
