"""What the probe trains and validates on: labelled clips or images through the frozen encoder, or features read
from the cache; the order each rank visits them in; which splits may be cached.

Train order is the official one (torch's DistributedSampler: a permutation per epoch, padded to a multiple of the
ranks); validation gives every rank every world_size-th sample, unpadded, so the per-sample top-1 counts each
sample once. A sample's clips and augmentation are a function of (seed, epoch, index), so a resumed epoch sees
the same inputs as an uninterrupted one.

An audio-visual backbone (an AV-JEPA run) sees what `probe.inputs` chooses of each clip: its video, the sound of its
window (a spectrogram per segment), or both in one joint sequence; the probe attends to every token it returns.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from jepa_scale.data.audio_clips import ClipAudio
from jepa_scale.data.eval_transforms import (ImageEvalTransform, ImageTrainTransform, VideoEvalTransform,
                                             VideoTrainTransform)
from jepa_scale.data.image_folder import LabelledImages, image_records
from jepa_scale.data.labelled_clips import LabelledClips, collate_clips
from jepa_scale.models.clip_aggregation import encode_clips, image_as_video


def cacheable(spec, split: str) -> bool:
    """Whether the split's encoder inputs are the same every epoch (no augmentation, deterministic clips)."""
    if not spec.probe.feature_cache:
        return False
    if split == "train":
        return not spec.probe.train_augment
    return spec.modality == "image" or not spec.probe.official_val_clip_sampling


def _transform(spec, split: str):
    crop, train = spec.resolution, split == "train" and spec.probe.train_augment
    if spec.modality == "video":
        return VideoTrainTransform(crop) if train else VideoEvalTransform(crop, spec.num_views if split == "val" else 1)
    return ImageTrainTransform(crop) if train else ImageEvalTransform(crop)


def labelled_dataset(spec, split: str) -> Dataset:
    """The split's dataset: CSV list or shard folder (video), ImageFolder split or image shards (image)."""
    path, seed = (spec.train_data if split == "train" else spec.val_data), spec.probe.seed
    if spec.modality == "image":
        records, _ = image_records(path)
        return LabelledImages(records, _transform(spec, split), seed)
    # training sees every segment only when the probe attends across them (one view); validation sees all
    segments = spec.num_segments if (split == "val" or spec.attend_across_segments) else 1
    random_clips = (spec.probe.train_augment if split == "train" else spec.probe.official_val_clip_sampling)
    kwargs = dict(frames_per_clip=spec.frames_per_clip, frame_step=spec.frame_step, num_segments=segments,
                  transform=_transform(spec, split), seed=seed, clip_duration=spec.clip_duration,
                  random_clip_sampling=random_clips, ceil_fps=spec.ceil_fps,
                  audio=ClipAudio(spec.audio) if spec.reads_audio else None, video=spec.reads_video)
    if Path(path).is_dir():
        return LabelledClips.from_shards([path], **kwargs)
    return LabelledClips.from_csv([path], **kwargs)


class AtEpoch(Dataset):
    """Indexed by (epoch, i): workers that outlive an epoch still draw that epoch's augmentation."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, i = key
        self.dataset.set_epoch(epoch)
        return self.dataset[i]


def train_order(n: int, rank: int, world: int, seed: int, epoch: int) -> list[int]:
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


def val_order(n: int, rank: int, world: int) -> list[int]:
    return list(range(rank, n, world))


def batches_per_epoch(n: int, world: int, batch_size: int) -> int:
    return math.ceil(math.ceil(n / world) / batch_size)


def encode(encoder, spec, clips: list[list]) -> list[torch.Tensor]:
    """The probe's inputs of a batch: one [B, N, D] token tensor per output (view, or view x segment)."""
    if spec.modality == "image":
        if spec.frames_per_clip == 1:  # an image backbone (2-D patches): the images as they are
            return [encoder(v) for v in clips[0]]
        return [encoder(image_as_video(v, spec.frames_per_clip)) for v in clips[0]]
    if spec.reads_audio:
        return encode_av_clips(encoder, clips, spec.attend_across_segments, spec.audio_tokens)
    return encode_clips(encoder, clips, spec.attend_across_segments, spec.encoder_cfg.data.tubelet_size)


def encode_av_clips(encoder, clips: list[list[dict]], attend_across_segments: bool,
                    audio_tokens: int) -> list[torch.Tensor]:
    """`encode_clips` for an audio-visual encoder: clips[segment][view] is {modality: [B, ...]} (audio only: one
    view). All S x V clips go through the encoder in one call, each clip's modalities jointly. Across segments a
    view's tokens are its segments' video tokens, segment 0 first (what `encode_clips` joins along time), then their
    audio tokens in the same order: the model's [video, audio] layout, per view."""
    S, V = len(clips), len(clips[0])
    B = next(iter(clips[0][0].values())).shape[0]
    joint = {m: torch.cat([view[m] for seg in clips for view in seg]) for m in clips[0][0]}
    per_clip = encoder(joint).split(B)  # item s*V + v: [B, N_video + N_audio, D]
    by_view = [[per_clip[s * V + v] for s in range(S)] for v in range(V)]
    if not attend_across_segments:
        return [o for view in by_view for o in view]
    n_video = per_clip[0].shape[1] - audio_tokens
    return [torch.cat([o[:, :n_video] for o in view] + [o[:, n_video:] for o in view], dim=1) for view in by_view]


def output_shape(spec, encoder, split: str) -> tuple[int, int, int]:
    """(outputs, tokens, dim) of one sample's features, as `encode` returns them."""
    p = spec.encoder_cfg.data
    video = max(1, spec.frames_per_clip // p.tubelet_size) * (spec.resolution // p.patch_size) ** 2
    if spec.modality == "image":
        return (spec.num_views if split == "val" else 1), video, encoder.embed_dim
    per_clip = (video if spec.reads_video else 0) + (spec.audio_tokens if spec.reads_audio else 0)
    views = spec.num_views if split == "val" and spec.reads_video else 1  # a sound has no spatial views
    segments = spec.num_segments if (split == "val" or spec.attend_across_segments) else 1
    if spec.attend_across_segments:
        return views, segments * per_clip, encoder.embed_dim
    return views * segments, per_clip, encoder.embed_dim


class EncodedBatches:
    """Decoded clips through the frozen encoder, batch by batch (DataLoader workers decode and augment)."""

    def __init__(self, dataset, encoder, spec, engine, workers: int, autocast=None):
        self.dataset, self.encoder, self.spec, self.engine = dataset, encoder, spec, engine
        self.workers, self.autocast = workers, autocast or engine.autocast
        self.failures: list = []  # every replaced sample's (source, reason), from all workers

    def batches(self, epoch: int, indices: list[int], batch_size: int):
        """(features, labels, indices) for `indices` in order."""
        loader = DataLoader(AtEpoch(self.dataset), batch_size=batch_size, sampler=[(epoch, i) for i in indices],
                            num_workers=self.workers, collate_fn=collate_clips, drop_last=False,
                            pin_memory=self.engine.device.type == "cuda", persistent_workers=False)
        dev = self.engine.device
        for clips, labels, idx, failed in loader:
            self.failures += failed
            clips = [[_to_device(c, dev) for c in seg] for seg in clips]
            with torch.no_grad(), self.autocast():
                features = encode(self.encoder, self.spec, clips)
            yield [f.float() for f in features], labels.to(dev), idx


def _to_device(clip, device):
    """A clip batch (a tensor, or {modality: tensor} with audio) on the device."""
    if isinstance(clip, dict):
        return {m: t.to(device, non_blocking=True) for m, t in clip.items()}
    return clip.to(device, non_blocking=True)


class CachedBatches:
    """Features read back from a complete FeatureCache."""

    def __init__(self, cache, engine):
        self.cache, self.engine = cache, engine
        self.failures: list = []

    def batches(self, epoch: int, indices: list[int], batch_size: int):
        dev = self.engine.device
        for start in range(0, len(indices), batch_size):
            idx = torch.tensor(indices[start:start + batch_size], dtype=torch.long)
            features, labels = self.cache.read(idx)
            yield [f.to(dev) for f in features.unbind(1)], labels.to(dev), idx
