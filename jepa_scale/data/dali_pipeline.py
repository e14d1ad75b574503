"""NVIDIA DALI video path: shards -> GPU decode (NVDEC) -> GPU crop, flip, normalise -> torch.

Two pipelines per stream, because DALI cannot checkpoint its video decoder:
  A (CPU, checkpointable): fn.readers.webdataset plus every random draw: the clip's frame indices (the official
    sampling, computed from the frame count stored in each sample's `vinfo`), the crop window and the flip;
  B (stateless): fn.decoders.video(frames=...) on `mixed` (GPU) or `cpu`, fn.resize of the crop window,
    fn.crop_mirror_normalize to a float [3, T, crop, crop] clip.
A's checkpoint after each batch is the exact data position. Imported only when DALI is used: nothing here is
needed on a machine without it.
"""
from __future__ import annotations

import queue
import threading

import numpy as np
import torch

from jepa_scale.data.augment import MEAN, STD

try:
    from nvidia.dali import fn, pipeline_def, types
    import nvidia.dali.math as dmath
except ImportError as e:  # pragma: no cover - exercised where DALI is absent
    raise ImportError("data.decoder=dali needs NVIDIA DALI: pip install 'jepa_scale[dali]'") from e


def clip_frame_indices(num_frames, fpc: int, step: int):
    """The official clip sampling as DALI arithmetic on a per-sample frame count (float DataNode)."""
    span = fpc * step
    j = types.Constant(np.arange(fpc, dtype=np.float32))
    u = fn.random.uniform(range=[0.0, 1.0])
    end = span + dmath.floor(u * (num_frames - span))  # uniform integer in [span, n - 1]
    start = end - span
    long_idx = dmath.min(dmath.floor(start + (j * span) / (fpc - 1)), end - 1)
    k = dmath.floor(num_frames / step)  # a short video: k frames over [0, n], padded with the last
    short_idx = dmath.min(dmath.floor((j * num_frames) / dmath.max(k - 1, 1)), num_frames - 1)
    short_idx = short_idx * (j < k) + (num_frames - 1) * (j >= k)
    is_long = num_frames > span
    return fn.cast(long_idx * is_long + short_idx * (1 - is_long), dtype=types.INT32)


def reader_pipeline(tars, index_paths, batch_size, fpc, step, scale, ratio, seed, shard_id, num_shards, threads,
                    checkpoint=None, shuffle_buffer=1024):
    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=None, seed=seed, enable_checkpointing=True)
    def pipe():
        video, vinfo = fn.readers.webdataset(
            paths=tars, index_paths=index_paths, ext=["mp4", "vinfo"], dtypes=[types.UINT8, types.INT32],
            random_shuffle=True, initial_fill=shuffle_buffer, shard_id=shard_id, num_shards=num_shards,
            pad_last_batch=False, name="reader")
        n = fn.cast(vinfo[0], dtype=types.FLOAT)
        idx = clip_frame_indices(n, fpc, step)
        hw = fn.cast(fn.stack(vinfo[3], vinfo[2]), dtype=types.INT64)
        anchor, shape = fn.random_crop_generator(hw, random_area=list(scale), random_aspect_ratio=list(ratio),
                                                 num_attempts=10)
        flip = fn.random.coin_flip(probability=0.5)
        return video, vinfo, idx, anchor, shape, flip

    return pipe(checkpoint=checkpoint)


def decode_pipeline(batch_size, crop, device_id, threads, flip_enabled=True):
    decode_device = "mixed" if device_id is not None else "cpu"

    # driven by feed_input one batch at a time (the producer thread does the prefetching)
    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id, prefetch_queue_depth=1,
                  exec_async=False, exec_pipelined=False)
    def pipe():
        video = fn.external_source(name="video", dtype=types.UINT8)
        idx = fn.external_source(name="idx", dtype=types.INT32)
        anchor = fn.external_source(name="anchor", dtype=types.FLOAT)
        shape = fn.external_source(name="shape", dtype=types.FLOAT)
        flip = fn.external_source(name="flip", dtype=types.INT32)
        frames = fn.decoders.video(video, frames=idx, device=decode_device)  # [T, H, W, 3]
        # the crop window, resized (bilinear, no antialias) to crop x crop: one op, on the GPU when there is one
        frames = fn.resize(frames, size=[crop, crop], roi_start=anchor, roi_end=anchor + shape, roi_relative=False,
                           interp_type=types.INTERP_LINEAR, antialias=False)
        return fn.crop_mirror_normalize(frames, mirror=flip if flip_enabled else 0,
                                        mean=[m * 255 for m in MEAN], std=[s * 255 for s in STD],
                                        dtype=types.FLOAT, output_layout="CFHW")

    return pipe()


def _to_torch(tensor_list, device: torch.device) -> torch.Tensor:
    t = tensor_list.as_tensor()
    if device.type == "cuda":
        from nvidia.dali.plugin.pytorch import feed_ndarray

        out = torch.empty(t.shape(), dtype=torch.float32, device=device)
        feed_ndarray(t, out, cuda_stream=torch.cuda.current_stream(device))
        return out
    return torch.from_numpy(np.array(t))


class DaliClips:
    """Batches of (clips [B, 3, T, crop, crop] float32 on the device, labels [B]) from shards, one reader shard
    per (rank, pipeline pair). `state()` after a batch resumes exactly after it."""

    def __init__(self, tars, batch_size, data_cfg, aug_cfg, seed, rank=0, world_size=1, device_id=None,
                 pipelines=1, threads=2, state: dict | None = None, prefetch=2):
        d = data_cfg
        self.device = torch.device("cuda", device_id) if device_id is not None else torch.device("cpu")
        index_paths = [t[: -len(".tar")] + ".idx" for t in tars]
        self.pairs = []
        for p in range(pipelines):
            a = reader_pipeline(tars, index_paths, batch_size, d.num_frames, d.sampling_rate,
                                aug_cfg.random_resize_scale, aug_cfg.random_resize_aspect_ratio,
                                seed + 7919 * p, rank * pipelines + p, world_size * pipelines, threads,
                                checkpoint=state["readers"][p] if state else None)
            b = decode_pipeline(batch_size, d.crop_size, device_id, threads, aug_cfg.horizontal_flip)
            a.build()
            b.build()
            self.pairs.append((a, b))
        self._states = [a.checkpoint() for a, _ in self.pairs]
        self._turn = state["turn"] if state else 0  # the pair whose batch comes next
        self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()

    def _one(self, p):
        a, b = self.pairs[p]
        video, vinfo, idx, anchor, shape, flip = a.run()
        b.feed_input("video", video)
        b.feed_input("idx", idx)
        b.feed_input("anchor", [np.asarray(x, np.float32) for x in anchor.as_array()])
        b.feed_input("shape", [np.asarray(x, np.float32) for x in shape.as_array()])
        b.feed_input("flip", flip)
        (clips,) = b.run()
        labels = torch.from_numpy(np.stack([np.asarray(v)[1] for v in vinfo.as_array()]).astype(np.int64))
        return _to_torch(clips, self.device), labels, a.checkpoint()

    def _produce(self):
        p = self._turn
        try:
            while True:
                self._queue.put((p, *self._one(p)))
                p = (p + 1) % len(self.pairs)
        except Exception as e:  # surfaced to the consumer in __next__, never lost in this thread
            self._queue.put(e)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        p, clips, labels, state = item
        self._states[p] = state
        self._turn = (p + 1) % len(self.pairs)
        return clips, labels

    def state(self) -> dict:
        """The position after the last batch handed out: each pair's reader checkpoint and whose turn is next."""
        return {"turn": self._turn, "readers": list(self._states)}
