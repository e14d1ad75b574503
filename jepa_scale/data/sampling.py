"""Which source frames make a clip: the official V-JEPA clip sampling, with an explicit random generator."""
from __future__ import annotations

import numpy as np


def clip_indices(num_video_frames: int, frames_per_clip: int, frame_step: int, num_clips: int,
                 rng: np.random.Generator, random_clip_sampling: bool = True) -> list[np.ndarray]:
    """One int64 array of `frames_per_clip` frame indices per clip.

    The video is cut into `num_clips` equal segments; in each, a window of frames_per_clip * frame_step frames
    ends at a random point in [window, segment) and the indices are spaced evenly inside it. A segment shorter
    than the window is covered from its start at `frame_step` spacing and padded with its last frame.
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
        else:
            n = partition_len // frame_step
            idx = np.concatenate((np.linspace(0, partition_len, num=n), np.ones(frames_per_clip - n) * partition_len))
            idx = np.clip(idx, 0, partition_len - 1).astype(np.int64)
        clips.append(idx + i * partition_len)
    return clips
