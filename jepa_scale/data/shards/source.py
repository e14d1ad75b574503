"""Read shard folders written by make_shards into per-dataset lists of samples (random access by offset)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jepa_scale.data.csv_source import DataError, VideoRecord
from jepa_scale.data.shards.make import MANIFEST


@dataclass(frozen=True)
class ShardRecord(VideoRecord):
    """A shard sample, with what its metadata says beyond a file's record: its keyframes (display indices; empty
    for older shards and --copy: the decoder then skips nothing) and, for --keep-every K shards, K and the
    original video's frame count and rate (the official clip is drawn on those, see sampling.snap_to_stored)."""
    keyframes: tuple = ()
    keep_every: int = 1
    source_frames: int = 0
    source_fps: float = 0.0


def _record(tar: Path, s: dict) -> ShardRecord:
    offset, size = s["members"]["mp4"]
    audio_offset, audio_size = s["members"].get("wav", (-1, 0))  # made with --audio
    return ShardRecord(str(tar), s["label"], f"{tar}:{s['key']}", offset, size, s["num_frames"], s["fps"],
                       audio_offset=audio_offset, audio_size=audio_size, keyframes=tuple(s.get("keyframes", ())),
                       keep_every=s.get("keep_every", 1), source_frames=s.get("source_frames", s["num_frames"]),
                       source_fps=s.get("source_fps", s["fps"]))


def read_shard_datasets(dirs: list[str]) -> tuple[list[list[VideoRecord]], list[float | None]]:
    """One record list per dataset of each shard folder's manifest, and each dataset's weight (or None)."""
    datasets, weights = [], []
    for d in dirs:
        d = Path(d)
        manifest_path = d / MANIFEST if d.is_dir() else d
        if not manifest_path.is_file():
            raise DataError(f"{manifest_path}: no shard manifest (write one with data_tools/make_shards.py)")
        manifest = json.loads(manifest_path.read_text())
        for ds in manifest["datasets"]:
            records = []
            for shard in ds["shards"]:
                tar = manifest_path.parent / shard
                side = json.loads(tar.with_suffix(".json").read_text())
                records += [_record(tar, s) for s in side["samples"]]
            if records:
                datasets.append(records)
                weights.append(ds.get("weight"))
    if not datasets:
        raise DataError(f"no samples in the shard folders {', '.join(map(str, dirs))}")
    return datasets, weights


def _manifest_options(folder: str) -> dict | None:
    """The make_shards options of a shard folder's manifest, None without a manifest."""
    path = Path(folder) / MANIFEST if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("options", {})


def shard_codec(folder: str) -> str | None:
    """The codec a shard folder was made with (`copy`: the sources' own, unknown here), None without a manifest."""
    options = _manifest_options(folder)
    if options is None:
        return None
    return "copy" if options.get("copy") else options.get("codec")


def shard_keep_every(folder: str) -> int:
    """The temporal subsampling a shard folder was made with (make_shards --keep-every; 1 without a manifest)."""
    return int((_manifest_options(folder) or {}).get("keep_every", 1))
