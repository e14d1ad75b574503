"""Batches of augmented clips and masks, each a pure function of (seed, batch counter, micro-batch index).

Global batch j of the data stream takes the j-th slice of a per-epoch permutation of the videos (drop-last, as
the official DistributedSampler); micro-batch r of it takes the r-th `batch_size` part. Clip sampling,
augmentation and masks draw from generators seeded by (seed, j, r, sample). Nothing depends on the worker or
world size, so a run resumed at batch j sees exactly the data an uninterrupted run would.

V-JEPA 2 frames-per-clip groups: each dataset has its clip length (`DataConfig.frames_per_dataset`, the official
`dataset_fpcs`), and a micro-batch's clips are split by it, as the official multi-sequence collator does. Group
order is `DataConfig.fpc_groups()` (first appearance in dataset_fpcs; group i uses predictor mask token i). Each
group is stacked and masked on its own: `Batch.inputs[video_key(fpc, groups)]` is [B_g, 3, fpc, H, W] and
`Batch.masks` has the same keys, drawn by the mask function of that key for B_g clips; a group without a clip in
this micro-batch is left out of both. `Batch.labels` are the groups' labels concatenated in group order (within a
group, in micro-batch order), so `labels[:B_0]` belong to the first present group's clips, and so on;
`Batch.size` is the number of clips of all groups. With one group (V1, and every released V2 config) the key is
"video" and the batch is exactly what it was before groups existed.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from jepa_scale.data.augment import augment_clip
from jepa_scale.data.batch import Batch, video_key
from jepa_scale.data.csv_source import DataError, VideoRecord
from jepa_scale.data.pyav_decoder import PyAVDecoder, VideoError
from jepa_scale.data.sample_order import MicroBatchSlices
from jepa_scale.data.sampling import clip_indices, snap_to_stored
from jepa_scale.data.seeds import draw_masks, sample_rng

log = logging.getLogger(__name__)


class ClipLoader:
    """One video -> one augmented clip [3, T, crop, crop] (T: `frames`, the record's dataset's frames per clip;
    data.num_frames by default), or VideoError. The frame step is `DataConfig.frame_step` (fps, clip_duration or
    sampling_rate)."""

    def __init__(self, data_cfg, aug_cfg, decoder=None):
        self.d, self.a = data_cfg, aug_cfg
        self.decoder = decoder or PyAVDecoder()

    def _indices(self, num_frames: int, fps: float, frames: int, rng):
        d = self.d
        step = d.frame_step(fps, frames)
        if d.filter_short_videos and num_frames < frames * step:
            raise VideoError(f"too short ({num_frames} frames < {frames * step})")
        return clip_indices(num_frames, frames, step, d.num_clips, rng)

    def _stored_indices(self, rec, frames: int, rng) -> list[np.ndarray]:
        """A --keep-every K shard sample: the official draw on the original video, mapped to the stored frames."""
        k = rec.keep_every
        step = self.d.frame_step(rec.source_fps, frames)
        if step % k:
            raise DataError(f"{rec.source}: made with make_shards --keep-every {k} (its metadata's `keep_every`), "
                            f"but this config's frame step is {step} (data.sampling_rate, data.fps or "
                            f"data.clip_duration), not a multiple of {k}: use shards made with a keep_every that "
                            f"divides the frame step, or without --keep-every")
        clips = self._indices(rec.source_frames, rec.source_fps, frames, rng)
        return [snap_to_stored(c, k, rec.num_frames) for c in clips]

    def _decode_shard(self, src: bytes, rec, indices: np.ndarray) -> np.ndarray:
        keyframes = getattr(rec, "keyframes", ())
        if keyframes and isinstance(self.decoder, PyAVDecoder):  # lets it skip the GOPs the clip has no frame in
            return self.decoder.clip(src, indices, keyframes=keyframes)
        return self.decoder.clip(src, indices)

    def __call__(self, rec: VideoRecord, rng: np.random.Generator, frames: int | None = None) -> torch.Tensor:
        return self.load(rec, rng, frames)[0]

    def load(self, rec: VideoRecord, rng: np.random.Generator, frames: int | None = None):
        """-> (clip, (start, end) in seconds of the first clip's window: its first sampled frame to just after its
        last, the span AV-JEPA takes the audio of)."""
        if rec.unusable:
            raise VideoError(rec.unusable)
        T = frames or self.d.num_frames
        picked = {}

        def choose(num_frames: int, fps: float) -> np.ndarray:
            picked["clips"], picked["fps"] = self._indices(num_frames, fps, T, rng), fps
            return np.concatenate(picked["clips"])

        src = rec.read_bytes() if rec.offset >= 0 else rec.path
        try:
            if getattr(rec, "keep_every", 1) > 1:
                picked["clips"], picked["fps"] = self._stored_indices(rec, T, rng), rec.fps
                frames = self._decode_shard(src, rec, np.concatenate(picked["clips"]))
            elif rec.offset >= 0:  # a shard sample: its frame count was measured when the shard was made
                frames = self._decode_shard(src, rec, choose(rec.num_frames, rec.fps))
            else:  # a file: one open serves the header and the decode
                frames, _ = self.decoder.probe_and_clip(src, lambda info: choose(info.num_frames, info.fps))
        except VideoError as e:
            if not e.true_frames:
                raise
            # the header overstated the length: sample again within the frames that exist
            frames = self.decoder.clip(src, choose(e.true_frames, picked["fps"]))
        clips = picked["clips"]
        frames = torch.from_numpy(frames)
        views = [augment_clip(frames[i * T:(i + 1) * T], self.d.crop_size, self.a.random_resize_scale,
                              self.a.random_resize_aspect_ratio, rng, self.a.horizontal_flip)
                 for i in range(len(clips))]
        first, fps = clips[0], picked["fps"] or 1.0  # a video without a frame rate: one frame a second
        window = (float(first[0]) / fps, float(first[-1] + 1) / fps)
        return (views[0] if len(views) == 1 else torch.stack(views)), window


class VideoBatches(MicroBatchSlices, torch.utils.data.Dataset):
    """Map-style: item j is micro-batch `micro_index` of global batch j. Use with `batch_size=None`."""

    def __init__(self, datasets: list[list[VideoRecord]], cfg, seed: int, micro_index: int = 0, num_micro: int = 1,
                 decoder=None, weights: list[float] | None = None, mask_fns: dict | None = None, audio=None):
        d = cfg.data
        self.records = [r for ds in datasets for r in ds]
        self.groups = d.fpc_groups()  # frames per clip of each group, in group order
        self.keys = {fpc: video_key(fpc, self.groups) for fpc in self.groups}
        fpcs = d.frames_per_dataset(len(datasets))
        if len(self.groups) == 1:
            fpcs = self.groups * len(datasets)
        elif len(fpcs) != len(datasets):
            raise DataError(f"data.dataset_fpcs has {len(fpcs)} values for {len(datasets)} datasets: several "
                            f"frames-per-clip groups need one value per dataset")
        # frames per clip of each record (records are the datasets concatenated)
        self.record_frames = np.repeat(np.asarray(fpcs, dtype=np.int64), [len(ds) for ds in datasets])
        self.seed = seed
        self._slice([len(ds) for ds in datasets], d.batch_size, micro_index, num_micro, seed, weights, d.sampling,
                    "videos")
        self.clip_loader = ClipLoader(d, cfg.data_aug, decoder)
        self.max_consecutive_failures = d.max_consecutive_failures  # read by the stream that gives up
        self.mask_fns = mask_fns or {}  # modality -> mask function, injected by the recipe (none for a probe)
        self.audio = audio  # (record, start s, end s) -> spectrogram, when the recipe reads audio (AV-JEPA)

    def __getitem__(self, j: int) -> Batch:
        groups = {key: ([], []) for key in self.keys.values()}  # key -> (clips, labels), in group order
        skipped, spectrograms = [], []
        for pos, i in enumerate(self.sample_ids(j)):
            rec, frames = self.records[i], int(self.record_frames[i])
            rng = sample_rng(self.seed, j, self.micro_index, pos)
            try:
                clip, window = self.clip_loader.load(rec, rng, frames)
                sound = self.audio(rec, *window) if self.audio else None
            except VideoError as e:
                skipped.append((f"{rec.source} {rec.path}", e.reason))
                continue
            clips, labels = groups[self.keys[frames]]
            clips.append(clip)
            labels.append(rec.label)
            if sound is not None:
                spectrograms.append(sound)
        present = {key: g for key, g in groups.items() if g[0]}
        if not present:
            inputs = {"video": torch.empty(0)} if len(self.groups) == 1 else {}
            return Batch(inputs, torch.empty(0, dtype=torch.long), j, skipped=skipped)
        labels = torch.tensor([label for _, group_labels in present.values() for label in group_labels])
        masks = draw_masks(self.mask_fns, len(labels), self.seed, j, self.micro_index,
                           groups={key: len(g[0]) for key, g in groups.items()})
        inputs = {key: torch.stack(g[0]) for key, g in present.items()}
        if self.audio:  # one frames-per-clip group (the AV root refuses more), so the clips' order is the sounds'
            inputs["audio"] = torch.stack(spectrograms)
        return Batch(inputs, labels, j, masks, skipped)
