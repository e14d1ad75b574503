"""Batches of augmented clips and masks, each a pure function of (seed, batch counter, micro-batch index).

Global batch j of the data stream takes the j-th slice of a per-epoch permutation of the videos (drop-last, as
the official DistributedSampler); micro-batch r of it takes the r-th `batch_size` part. Clip sampling,
augmentation and masks draw from generators seeded by (seed, j, r, sample). Nothing depends on the worker or
world size, so a run resumed at batch j sees exactly the data an uninterrupted run would.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from jepa_scale.data.augment import augment_clip
from jepa_scale.data.batch import Batch
from jepa_scale.data.csv_source import DataError, VideoRecord
from jepa_scale.data.pyav_decoder import PyAVDecoder, VideoError
from jepa_scale.data.sample_order import SampleOrder
from jepa_scale.data.sampling import clip_indices
from jepa_scale.data.seeds import draw_masks, sample_rng

log = logging.getLogger(__name__)


class ClipLoader:
    """One video -> one augmented clip [3, T, crop, crop], or VideoError."""

    def __init__(self, data_cfg, aug_cfg, decoder=None):
        self.d, self.a = data_cfg, aug_cfg
        self.decoder = decoder or PyAVDecoder()

    def _indices(self, num_frames: int, fps: float, rng):
        d = self.d
        step = d.sampling_rate
        if d.clip_duration is not None:  # official: a fixed duration in seconds overrides the frame step
            step = max(1, int(d.clip_duration * fps / d.num_frames))
        if d.filter_short_videos and num_frames < d.num_frames * step:
            raise VideoError(f"too short ({num_frames} frames < {d.num_frames * step})")
        return clip_indices(num_frames, d.num_frames, step, d.num_clips, rng)

    def __call__(self, rec: VideoRecord, rng: np.random.Generator) -> torch.Tensor:
        if rec.unusable:
            raise VideoError(rec.unusable)
        picked = {}

        def choose(num_frames: int, fps: float) -> np.ndarray:
            picked["clips"], picked["fps"] = self._indices(num_frames, fps, rng), fps
            return np.concatenate(picked["clips"])

        src = rec.read_bytes() if rec.offset >= 0 else rec.path
        try:
            if rec.offset >= 0:  # a shard sample: its frame count was measured when the shard was made
                frames = self.decoder.clip(src, choose(rec.num_frames, rec.fps))
            else:  # a file: one open serves the header and the decode
                frames, _ = self.decoder.probe_and_clip(src, lambda info: choose(info.num_frames, info.fps))
        except VideoError as e:
            if not e.true_frames:
                raise
            # the header overstated the length: sample again within the frames that exist
            frames = self.decoder.clip(src, choose(e.true_frames, picked["fps"]))
        clips = picked["clips"]
        frames = torch.from_numpy(frames)
        T = self.d.num_frames
        views = [augment_clip(frames[i * T:(i + 1) * T], self.d.crop_size, self.a.random_resize_scale,
                              self.a.random_resize_aspect_ratio, rng, self.a.horizontal_flip)
                 for i in range(len(clips))]
        return views[0] if len(views) == 1 else torch.stack(views)


class VideoBatches(torch.utils.data.Dataset):
    """Map-style: item j is micro-batch `micro_index` of global batch j. Use with `batch_size=None`."""

    def __init__(self, datasets: list[list[VideoRecord]], cfg, seed: int, micro_index: int = 0, num_micro: int = 1,
                 decoder=None, weights: list[float] | None = None, mask_fns: dict | None = None):
        d = cfg.data
        self.records = [r for ds in datasets for r in ds]
        self.seed = seed
        self.batch_size, self.micro_index, self.num_micro = d.batch_size, micro_index, num_micro
        self.global_batch = d.batch_size * num_micro
        self.order = SampleOrder([len(ds) for ds in datasets], self.global_batch, seed, weights, d.sampling)
        self.batches_per_epoch = self.order.batches_per_epoch
        if self.batches_per_epoch == 0:
            raise DataError(f"{len(self.records)} videos cannot fill one global batch of {self.global_batch} "
                            f"(data.batch_size={d.batch_size} x {num_micro} micro-batches)")
        self.clip_loader = ClipLoader(d, cfg.data_aug, decoder)
        self.max_consecutive_failures = d.max_consecutive_failures  # read by the stream that gives up
        self.mask_fns = mask_fns or {}  # modality -> mask function, injected by the recipe (none for a probe)

    def __len__(self):  # nominal; the stream is indexed by an unbounded batch counter
        return self.batches_per_epoch

    def sample_ids(self, j: int) -> list[int]:
        start = self.micro_index * self.batch_size
        return self.order.batch(j)[start:start + self.batch_size].tolist()

    def __getitem__(self, j: int) -> Batch:
        clips, labels, skipped = [], [], []
        for pos, i in enumerate(self.sample_ids(j)):
            rec = self.records[i]
            rng = sample_rng(self.seed, j, self.micro_index, pos)
            try:
                clips.append(self.clip_loader(rec, rng))
                labels.append(rec.label)
            except VideoError as e:
                skipped.append((f"{rec.source} {rec.path}", e.reason))
        if not clips:
            return Batch({"video": torch.empty(0)}, torch.empty(0, dtype=torch.long), j, skipped=skipped)
        masks = draw_masks(self.mask_fns, len(clips), self.seed, j, self.micro_index)
        return Batch({"video": torch.stack(clips)}, torch.tensor(labels), j, masks, skipped)
