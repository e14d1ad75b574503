"""Which source frames make a clip: the official V-JEPA clip sampling, with an explicit random generator."""
from __future__ import annotations

import math

import numpy as np


def frame_step_for_duration(duration: float, fps: float, frames_per_clip: int, ceil_fps: bool = False) -> int:
    """The frame step that spreads `frames_per_clip` frames over `duration` seconds: int(duration * fps / fpc).

    V-JEPA 1 uses the stream's fps as it is, V-JEPA 2 rounds it up first (`ceil_fps=True`). The step is at least 1:
    a step of 0 (a duration shorter than `frames_per_clip` frames) would give an empty clip window.
    """
    if fps <= 0:
        raise ValueError(f"clip duration {duration} s needs the video's frame rate, got fps={fps}")
    rate = math.ceil(fps) if ceil_fps else fps
    return max(1, int(duration * rate / frames_per_clip))


def clip_indices(num_video_frames: int, frames_per_clip: int, frame_step: int, num_clips: int,
                 rng: np.random.Generator, random_clip_sampling: bool = True,
                 allow_clip_overlap: bool = False) -> list[np.ndarray]:
    """One int64 array of `frames_per_clip` frame indices per clip.

    The video is cut into `num_clips` equal segments; in each, a window of frames_per_clip * frame_step frames
    ends at a random point in [window, segment) and the indices are spaced evenly inside it. When a segment is not
    longer than the window: without `allow_clip_overlap` (pretraining) the segment is covered from its start at
    `frame_step` spacing and padded with its last frame; with it (the frozen evals) every clip covers up to one
    window from its own start, the starts spread evenly over the video (clips overlap, and all coincide when the
    video is no longer than one window), padded with the last index.
    """
    clip_len = frames_per_clip * frame_step
    partition_len = num_video_frames // num_clips
    clips = []
    for i in range(num_clips):
        if partition_len > clip_len:
            end = int(rng.integers(clip_len, partition_len)) if random_clip_sampling else clip_len
            start = end - clip_len
            idx = np.linspace(start, end, num=frames_per_clip)
            idx = np.clip(idx, start, end - 1).astype(np.int64)
            clips.append(idx + i * partition_len)
        elif allow_clip_overlap:
            clips.append(_overlapping_clip(num_video_frames, frames_per_clip, frame_step, num_clips, i))
        else:
            n = partition_len // frame_step
            idx = np.concatenate((np.linspace(0, partition_len, num=n), np.ones(frames_per_clip - n) * partition_len))
            idx = np.clip(idx, 0, partition_len - 1).astype(np.int64)
            clips.append(idx + i * partition_len)
    return clips


def _overlapping_clip(num_video_frames: int, frames_per_clip: int, frame_step: int, num_clips: int,
                      i: int) -> np.ndarray:
    clip_len = frames_per_clip * frame_step
    sample_len = min(clip_len, num_video_frames) - 1
    n = sample_len // frame_step
    idx = np.concatenate((np.linspace(0, sample_len, num=n), np.ones(frames_per_clip - n) * sample_len))
    # clipped below sample_len: the last index appears twice or more, as in the official loader
    idx = np.clip(idx, 0, sample_len - 1).astype(np.int64)
    # only reached with num_clips > 1 when the video is longer than one window (else partition_len > clip_len)
    clip_step = (num_video_frames - clip_len) // (num_clips - 1) if num_video_frames > clip_len else 0
    return idx + i * clip_step


def snap_to_stored(indices: np.ndarray, keep_every: int, stored_frames: int) -> np.ndarray:
    """Official clip indices drawn on an original video -> indices into its `make_shards --keep-every K` copy, which
    holds original frames 0, K, 2K, ...: each is the stored frame nearest in time (ties to the even one, so the
    rounding has no bias), clamped to the last stored frame.

    Not exact, and no subsampling can be: the official indices start + floor(j * fpc * step / (fpc - 1)) do not lie
    on any grid coarser than one frame. What is kept: the draw itself (the window's position, the same random
    numbers, so the crop and flip that follow are the official ones too), and every frame's time is within K/2
    frames of the official one (up to K - 1 for the video's last frames when its length is not a multiple of K),
    with mean offset 0. Tested in tests/test_data_fast_path.py.
    """
    return np.minimum(np.rint(np.asarray(indices) / keep_every).astype(np.int64), stored_frames - 1)
