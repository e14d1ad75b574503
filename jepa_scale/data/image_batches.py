"""I-JEPA pretraining batches: images, each batch a pure function of (seed, batch counter, micro-batch index).

The images come from the official ImageFolder split (`data.root_path`/`data.image_folder`/train/, as the official
ImageNet dataset reads it) or from image shards (`data.shards`, made by `data_tools/make_shards.py --images`).
Global batch j takes the j-th slice of a per-epoch permutation (drop-last, as the official DistributedSampler),
micro-batch r its r-th part, like `VideoBatches`. Each image gets the official transform, a RandomResizedCrop
(scale `data.crop_scale`, ratio 3/4..4/3, bilinear with antialiasing as torchvision's on PIL images) to
`data.crop_size` and ImageNet normalisation, from a generator seeded by (seed, j, r, position). The I-JEPA masks
(`MultiBlock2DMasks`) take their block sizes from j, as the official collator its step counter. An image that
cannot be decoded is left out of its batch and reported through the stream (`DataStream`: counted, logged,
written to the skip report, and the stream gives up when nothing decodes).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from jepa_scale.data.augment import crop_params, normalize
from jepa_scale.data.batch import Batch
from jepa_scale.data.csv_source import DataError
from jepa_scale.data.image_folder import ImageError, ImageRecord, decode_image, scan_image_folder
from jepa_scale.data.sample_order import MicroBatchSlices
from jepa_scale.data.seeds import draw_masks, sample_rng

log = logging.getLogger(__name__)

RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's default aspect-ratio range (the official passes none)


def open_images(data_cfg) -> list[ImageRecord]:
    """The training images: every image shard folder of `data.shards` in order, else the ImageFolder split
    `data.root_path`/`data.image_folder`/train/ (torchvision's ImageFolder order and labels)."""
    from jepa_scale.data.shards.images import read_image_shards

    if data_cfg.shards:
        return [r for folder in data_cfg.shards for r in read_image_shards(folder)[0]]
    root = data_cfg.train_folder
    if "$replace_this" in root:
        raise DataError(f"data.root_path is {data_cfg.root_path!r}, the official config's placeholder: set it (and "
                        f"data.image_folder) to where the ImageFolder tree is, or give data.shards")
    # the root's own name, a colon, the file inside: the stream groups skipped images by the part before the colon
    return [ImageRecord(path, label, f"{root}:{os.path.relpath(path, root)}")
            for path, label in scan_image_folder(root)[0]]


def ijepa_crop(image: torch.Tensor, crop_size: int, scale, rng: np.random.Generator) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, crop, crop]: RandomResizedCrop(crop_size, scale) then normalisation."""
    H, W, _ = image.shape
    top, left, h, w = crop_params(H, W, scale, RATIO, rng)
    x = image[None, top:top + h, left:left + w].permute(0, 3, 1, 2)  # a channels-last view: resized as uint8
    x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=True)
    return normalize(x[0])


class ImageBatches(MicroBatchSlices, torch.utils.data.Dataset):
    """Map-style: item j is micro-batch `micro_index` of global batch j (use with `batch_size=None`), a Batch with
    inputs {"image": [B, 3, crop, crop]}, labels (the ImageFolder classes, unused by pretraining) and masks
    {"image": Masks(context=[nenc x [B, K_ctx]], target=[npred x [B, K_tgt]])}."""

    def __init__(self, records: list[ImageRecord], cfg, seed: int, micro_index: int = 0, num_micro: int = 1,
                 mask_fns: dict | None = None):
        d = cfg.data
        self.records, self.seed = records, seed
        self.crop_size, self.scale = d.crop_size, tuple(d.crop_scale)
        self._slice([len(records)], d.batch_size, micro_index, num_micro, seed, what="images")
        self.max_consecutive_failures = d.max_consecutive_failures  # read by the stream that gives up
        self.mask_fns = mask_fns or {}

    def __getitem__(self, j: int) -> Batch:
        images, labels, skipped = [], [], []
        for pos, i in enumerate(self.sample_ids(j)):
            rec = self.records[i]
            try:
                image = decode_image(rec)
            except ImageError as e:
                skipped.append((rec.source, e.reason))
                continue
            images.append(ijepa_crop(image, self.crop_size, self.scale, sample_rng(self.seed, j, self.micro_index, pos)))
            labels.append(rec.label)
        if not images:
            return Batch({"image": torch.empty(0)}, torch.empty(0, dtype=torch.long), j, skipped=skipped)
        masks = draw_masks(self.mask_fns, len(images), self.seed, j, self.micro_index)
        return Batch({"image": torch.stack(images)}, torch.tensor(labels), j, masks, skipped)


def open_image_streams(cfg, micro_indices: list[int], num_micro: int, device: torch.device, mask_fns: dict,
                       skip_report=None) -> list:
    """One DataStream over ImageBatches per micro-batch index of this rank (cfg.data.batch_size is the
    micro-batch size); the images are listed once."""
    from jepa_scale.data.sources import loader_workers
    from jepa_scale.data.stream import DataStream

    records = open_images(cfg.data)
    log.info("%d training images (%s)", len(records), ", ".join(cfg.data.shards) or cfg.data.train_folder)
    workers = loader_workers(cfg.data.num_workers, len(micro_indices))
    return [DataStream(ImageBatches(records, cfg, cfg.meta.seed, m, num_micro, mask_fns), workers,
                       device.type == "cuda", skip_report=skip_report)
            for m in micro_indices]
