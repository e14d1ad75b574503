"""The datasets a config names: CSV lists (official) or shard folders, each a list of records, with weights."""
from __future__ import annotations

from jepa_scale.data.csv_source import DataError, VideoRecord, read_video_lists
from jepa_scale.data.shards.source import read_shard_datasets


def open_datasets(data_cfg) -> tuple[list[list[VideoRecord]], list[float] | None]:
    if data_cfg.shards:
        datasets, manifest_weights = read_shard_datasets(data_cfg.shards)
        weights = data_cfg.datasets_weights
        if weights is None and all(w is not None for w in manifest_weights):
            weights = manifest_weights
    else:
        if not data_cfg.datasets:
            raise DataError("no data: set data.datasets (CSV lists) or data.shards (shard folders)")
        datasets = [read_video_lists([csv]) for csv in data_cfg.datasets]
        weights = data_cfg.datasets_weights
    if weights is not None and len(weights) != len(datasets):
        raise DataError(f"data.datasets_weights has {len(weights)} weights for {len(datasets)} datasets")
    return datasets, weights
