"""Labelled video clips for the frozen evaluation: a map-style dataset, one sample = `num_segments` clips.

Frames are chosen by the official eval sampling (`clip_indices(..., allow_clip_overlap=True)`): videos longer than
`num_segments` windows get one window per segment (its end random when `random_clip_sampling`, as the official
eval leaves it); shorter ones get overlapping windows spread over the video. Every random draw of sample `i`
(clip windows, augmentation, replacement) comes from `eval_sample_rng(seed, epoch, i)`, so a sample is the same
whichever worker or rank loads it, and after a resume. With an `audio` reader (an AV-JEPA backbone) each segment
also gets the sound of exactly its time window, as pretraining's clip gets its own.

A sample that cannot be loaded (a VideoError: missing, unreadable, too few frames...) is replaced by another one
drawn from the same generator, as the official loader does, but never silently: each failure is counted by
reason, its source is kept and logged once, and it is returned with the sample (`replaced`), because counts kept
in a DataLoader worker's copy of the dataset never reach the main process. `max_consecutive_failures` failures in
a row, or every record failing, raise `NoUsableSamples` instead of looping forever.
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from jepa_scale.data.csv_source import DataError, VideoRecord, read_video_lists
from jepa_scale.data.pyav_decoder import PyAVDecoder, VideoError
from jepa_scale.data.sampling import clip_indices, frame_step_for_duration
from jepa_scale.data.seeds import eval_sample_rng
from jepa_scale.data.stream import REASONS_SHOWN, FailureStreak, QuietLog, reason_kind

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 100

# (frames uint8 [T, H, W, 3] or image [H, W, 3], rng) -> one float tensor per view
Transform = Callable[[torch.Tensor, np.random.Generator], list]


class NoUsableSamples(DataError):
    """An evaluation dataset gave up: too many samples in a row could not be loaded, or none of them can."""


class Failure(NamedTuple):
    source: str  # the record's source ("list.csv:LINE", "shard.tar:key", an image path): where the sample came from
    reason: str


class Failures:
    """Failed samples: a count per kind of reason (`skipped`) and the first reason of each source (`sources`)."""

    def __init__(self):
        self.skipped: collections.Counter = collections.Counter()
        self.sources: dict[str, str] = {}
        self._log = QuietLog()

    def add(self, source: str, reason: str, log_it: bool = True, where: str = ""):
        """Count one failure; a source's first failure is logged (as `where`, default the source; capped per kind
        by QuietLog), later ones are only counted."""
        kind = reason_kind(reason)
        self.skipped[kind] += 1
        if source not in self.sources:
            self.sources[source] = reason
            if log_it:
                self._log.warn(f"eval samples replaced for {kind!r}", "replaced eval sample %s: %s",
                               where or source, reason)

    def extend(self, failures, log_it: bool = False):
        """Count the `replaced` failures of loaded batches. Not logged by default: the process that met them (a
        DataLoader worker, or the main process) logged them already."""
        for f in failures:
            self.add(f.source, f.reason, log_it)


def give_up_message(streak: FailureStreak, what: str) -> str:
    s = streak
    which = (f"all {s.num_videos} listed" if len(s.videos) >= s.num_videos
             else f"{len(s.videos)} different ones of the {s.num_videos} listed")
    reasons = "; ".join(f"{k}: {n} (e.g. {s.examples[k]})" for k, n in s.reasons.most_common(REASONS_SHOWN))
    return (f"no usable {what}: the last {s.tried} tried in a row failed ({which}; "
            f"max_consecutive_failures={s.limit}). Reasons: {reasons}.")


class ReplacingDataset(torch.utils.data.Dataset):
    """Sample i -> (views, label, i, replaced); `_load(record, rng)` gives the views or raises one of `errors`."""

    what = "samples"  # in the give-up message
    errors: tuple = (VideoError,)

    def __init__(self, records: list, seed: int, max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES):
        if not records:
            raise DataError(f"no {self.what} to evaluate on: the record list is empty")
        if max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be positive, got {max_consecutive_failures}")
        self.records, self.seed, self.epoch = list(records), int(seed), 0
        self.failures = Failures()
        self._streak = FailureStreak(max_consecutive_failures, len(self.records))

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def skipped(self) -> collections.Counter:
        """Failures by kind of reason, in this process (with workers, count the samples' `replaced` instead)."""
        return self.failures.skipped

    @property
    def failed_sources(self) -> dict[str, str]:
        return self.failures.sources

    def _load(self, record, rng: np.random.Generator) -> list[list[torch.Tensor]]:
        raise NotImplementedError

    def __getitem__(self, i: int):
        """(views[segment][view], label, i, replaced). `label` is that of the sample actually loaded (a
        replacement's when sample i failed); `replaced` lists the Failure of every sample tried before it."""
        rng = eval_sample_rng(self.seed, self.epoch, i)
        replaced, j = [], int(i)
        while True:
            rec = self.records[j]
            try:
                views = self._load(rec, rng)
            except self.errors as e:
                replaced.append(self._failed(rec, getattr(e, "reason", str(e))))
                j = int(rng.integers(len(self.records)))
                continue
            self._streak.reset()
            return views, int(rec.label), int(i), replaced

    def _failed(self, rec, reason: str) -> Failure:
        failure = Failure(rec.source, reason)
        where = rec.source if rec.path in rec.source else f"{rec.source} {rec.path}"  # a CSV line: add its path
        self.failures.add(*failure, where=where)
        self._streak.add(where, reason)
        if self._streak.hopeless:
            streak, self._streak = self._streak, FailureStreak(self._streak.limit, len(self.records))
            raise NoUsableSamples(give_up_message(streak, self.what))
        return failure


def checked_views(views, where: str) -> list[torch.Tensor]:
    if not isinstance(views, (list, tuple)) or not all(isinstance(v, torch.Tensor) for v in views):
        raise TypeError(f"the transform must return a list of tensors (one per view) for {where}, "
                        f"got {type(views).__name__}")
    return list(views)


class LabelledClips(ReplacingDataset):
    """Videos -> `num_segments` clips of `frames_per_clip` frames, each turned into views by `transform`.

    `transform(frames uint8 [T, H, W, 3], rng) -> list[num_views] of float [3, T, crop, crop]`, called once per
    segment (segments are augmented independently). `clip_duration` (seconds) replaces `frame_step` by
    `frame_step_for_duration` of each video's fps (`ceil_fps`: V-JEPA 2's rounding).

    `audio(record, start s, end s) -> [1, F, T]` (a `ClipAudio`) adds each segment's sound, read for exactly that
    segment's window (its first frame to just after its last, as pretraining's window): every view of the segment
    is then {"video": view, "audio": sound}. `video=False` (audio only) gives each segment one view {"audio":
    sound} and decodes no frame: the windows come from the header. A record without usable audio raises
    VideoError in the reader, so it is replaced and counted like a bad video.
    """

    what = "videos"

    def __init__(self, records: list[VideoRecord], frames_per_clip: int, frame_step: int, num_segments: int,
                 transform: Transform, seed: int, clip_duration: float | None = None,
                 random_clip_sampling: bool = True, decoder=None,
                 max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES, ceil_fps: bool = False,
                 audio: Callable | None = None, video: bool = True):
        super().__init__(records, seed, max_consecutive_failures)
        if min(frames_per_clip, frame_step, num_segments) < 1:
            raise ValueError(f"frames_per_clip, frame_step and num_segments must be positive, got "
                             f"{frames_per_clip}, {frame_step}, {num_segments}")
        if not video and audio is None:
            raise ValueError("video=False (audio only) needs an audio reader")
        self.frames_per_clip, self.frame_step, self.num_segments = frames_per_clip, frame_step, num_segments
        self.transform, self.clip_duration, self.ceil_fps = transform, clip_duration, ceil_fps
        self.random_clip_sampling = random_clip_sampling
        self.decoder = decoder or PyAVDecoder()
        self.audio, self.video = audio, video

    @classmethod
    def from_csv(cls, csv_paths: list[str], **kwargs) -> LabelledClips:
        """From official `path label` lists (bad lines are logged and skipped by read_video_lists)."""
        return cls(read_video_lists(list(csv_paths)), **kwargs)

    @classmethod
    def from_shards(cls, dirs: list[str], **kwargs) -> LabelledClips:
        """From make_shards folders: every dataset of every folder, in order (mixing weights do not apply)."""
        from jepa_scale.data.shards.source import read_shard_datasets

        datasets, _ = read_shard_datasets(list(dirs))
        records = [r for ds in datasets for r in ds]
        subsampled = next((r for r in records if r.keep_every > 1), None)
        if subsampled is not None:  # the eval protocol's frame indices are the original video's
            raise DataError(f"{subsampled.source}: made with make_shards --keep-every {subsampled.keep_every}; an "
                            f"eval reads shards made without it (the official eval sampling needs every frame)")
        return cls(records, **kwargs)

    def _indices(self, num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
        step = self.frame_step
        if self.clip_duration is not None:
            if fps <= 0:
                raise VideoError("no frame rate in the header (clip_duration needs one)")
            step = frame_step_for_duration(self.clip_duration, fps, self.frames_per_clip, self.ceil_fps)
        clips = clip_indices(num_frames, self.frames_per_clip, step, self.num_segments, rng,
                             self.random_clip_sampling, allow_clip_overlap=True)
        idx = np.concatenate(clips)
        if idx.min() < 0 or idx.max() >= num_frames:  # 0 or 1 frame, or fewer frames than segments
            raise VideoError(f"too few frames ({num_frames}) for {self.num_segments} clips")
        return idx

    def _frames(self, rec: VideoRecord, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        """(uint8 [num_segments * T, H, W, 3], their frame indices, the video's frame rate)."""
        if rec.unusable:
            raise VideoError(rec.unusable)
        picked = {}

        def choose(num_frames: int, fps: float) -> np.ndarray:
            picked["indices"], picked["fps"] = self._indices(num_frames, fps, rng), fps
            return picked["indices"]

        if rec.offset >= 0:  # a shard sample: frame count and rate were measured when the shard was made
            try:
                src = rec.read_bytes()
            except OSError as e:
                raise VideoError(f"unreadable shard ({e})") from None
            frames = self.decoder.clip(src, choose(rec.num_frames, rec.fps))
            return frames, picked["indices"], picked["fps"]
        try:
            frames, _ = self.decoder.probe_and_clip(rec.path, lambda info: choose(info.num_frames, info.fps))
        except VideoError as e:
            if not e.true_frames:
                raise
            # the header overstated the length: sample again within the frames that exist
            frames = self.decoder.clip(rec.path, choose(e.true_frames, picked["fps"]))
        return frames, picked["indices"], picked["fps"]

    def _header_indices(self, rec: VideoRecord, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """The frame indices of the segments and the frame rate, from the header alone (nothing is decoded)."""
        if rec.unusable:
            raise VideoError(rec.unusable)
        if rec.offset >= 0:
            return self._indices(rec.num_frames, rec.fps, rng), rec.fps
        info = self.decoder.probe(rec.path)
        return self._indices(info.num_frames, info.fps, rng), info.fps

    def _sounds(self, rec: VideoRecord, indices: np.ndarray, fps: float) -> list[torch.Tensor]:
        return [self.audio(rec, start, end) for start, end in segment_windows(indices, self.frames_per_clip, fps)]

    def _load(self, rec: VideoRecord, rng: np.random.Generator) -> list[list]:
        if not self.video:
            indices, fps = self._header_indices(rec, rng)
            return [[{"audio": sound}] for sound in self._sounds(rec, indices, fps)]
        frames, indices, fps = self._frames(rec, rng)
        sounds = self._sounds(rec, indices, fps) if self.audio else None  # a failed read skips the augmentation
        frames, T = torch.from_numpy(frames), self.frames_per_clip
        segments = [checked_views(self.transform(frames[s * T:(s + 1) * T], rng), rec.source)
                    for s in range(self.num_segments)]
        if sounds is None:
            return segments
        return [[{"video": v, "audio": sound} for v in views] for views, sound in zip(segments, sounds)]


def segment_windows(indices: np.ndarray, frames_per_clip: int, fps: float) -> list[tuple[float, float]]:
    """(start s, end s) of each segment's frames: its first sampled frame to just after its last, the span
    pretraining's `ClipLoader` takes a clip's audio of."""
    fps = fps or 1.0  # a video without a frame rate: one frame a second, as in pretraining
    return [(float(seg[0]) / fps, float(seg[-1] + 1) / fps) for seg in indices.reshape(-1, frames_per_clip)]


def collate_clips(samples: list) -> tuple[list[list], torch.Tensor, torch.Tensor, list[Failure]]:
    """Samples of LabelledClips or LabelledImages -> (clips[S][V] of [B, ...] (video [B, 3, T, H, W], image
    [B, 3, H, W]; with audio a dict of them per modality, audio [B, 1, F, T]), labels [B] long, indices [B] long,
    every sample's `replaced` failures in one list)."""
    if not samples:
        raise ValueError("collate_clips got no samples")
    first = samples[0][0]
    clips = [[_stack([s[0][seg][v] for s in samples]) for v in range(len(first[seg]))]
             for seg in range(len(first))]
    labels = torch.tensor([s[1] for s in samples], dtype=torch.long)
    indices = torch.tensor([s[2] for s in samples], dtype=torch.long)
    return clips, labels, indices, [f for s in samples for f in s[3]]


def _stack(views: list):
    if isinstance(views[0], dict):
        return {m: torch.stack([v[m] for v in views]) for m in views[0]}
    return torch.stack(views)
