"""Read shard folders written by make_shards into per-dataset lists of samples (random access by offset)."""
from __future__ import annotations

import json
from pathlib import Path

from jepa_scale.data.csv_source import DataError, VideoRecord
from jepa_scale.data.shards.make import MANIFEST


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
                for s in side["samples"]:
                    offset, size = s["members"]["mp4"]
                    audio_offset, audio_size = s["members"].get("wav", (-1, 0))  # made with --audio
                    records.append(VideoRecord(str(tar), s["label"], f"{tar}:{s['key']}", offset, size,
                                               s["num_frames"], s["fps"], audio_offset=audio_offset,
                                               audio_size=audio_size))
            if records:
                datasets.append(records)
                weights.append(ds.get("weight"))
    if not datasets:
        raise DataError(f"no samples in the shard folders {', '.join(map(str, dirs))}")
    return datasets, weights


def shard_codec(folder: str) -> str | None:
    """The codec a shard folder was made with (`copy`: the sources' own, unknown here), None without a manifest."""
    path = Path(folder) / MANIFEST if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        return None
    options = json.loads(path.read_text()).get("options", {})
    return "copy" if options.get("copy") else options.get("codec")
