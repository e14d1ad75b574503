"""The datasets a config names (CSV lists or shard folders) and the stream that feeds them to training."""
from __future__ import annotations

import importlib.util
import logging
import os

import torch

from jepa_scale.config.schema import dali_unsupported
from jepa_scale.data.csv_source import DataError, VideoRecord, read_video_lists
from jepa_scale.data.shards.source import read_shard_datasets, shard_codec, shard_keep_every
from jepa_scale.distributed.env import local_processes

log = logging.getLogger(__name__)


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


def resolve_decoder(data_cfg) -> str:
    """auto: DALI when training from shards on a GPU with DALI installed; otherwise PyAV."""
    if data_cfg.decoder != "auto":
        if data_cfg.decoder == "dali" and not data_cfg.shards:
            raise DataError("data.decoder=dali reads shards: set data.shards (see data_tools/make_shards.py)")
        if data_cfg.decoder == "dali" and subsampled_shards(data_cfg.shards):
            raise DataError(f"data.decoder=dali: {subsampled_shards(data_cfg.shards)[0]} was made with make_shards "
                            f"--keep-every, whose clips only the PyAV path draws on the original frames: use "
                            f"data.decoder: pyav, or shards made without --keep-every")
        return data_cfg.decoder
    dali = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
    if not (data_cfg.shards and dali and torch.cuda.is_available()):
        return "pyav"
    if subsampled_shards(data_cfg.shards):
        log.info("video decoding: PyAV, since %s was made with make_shards --keep-every (DALI would sample its "
                 "stored frames as if they were the original ones)", subsampled_shards(data_cfg.shards)[0])
        return "pyav"
    for key, why in dali_unsupported(data_cfg):
        log.info("video decoding: PyAV, since DALI would not apply %s (%s)", key, why)
        return "pyav"
    return "dali"


def subsampled_shards(shard_dirs: list[str]) -> list[str]:
    """The shard folders made with make_shards --keep-every K > 1."""
    return [folder for folder in shard_dirs if shard_keep_every(folder) > 1]


DALI_CPU_CODECS = ("vp8", "vp9", "mjpeg")  # what DALI's CPU video decoder reads; H.264/HEVC need NVDEC


def check_dali_cpu_codecs(shard_dirs: list[str]):
    """DALI's CPU build fails on H.264 with an internal assert: say what it reads before it gets there."""
    for folder in shard_dirs:
        codec = shard_codec(folder)
        if codec not in (None, "copy", *DALI_CPU_CODECS):
            raise DataError(f"{folder}: {codec} shards, but DALI's CPU decoder reads only {', '.join(DALI_CPU_CODECS)}"
                            f": use data.decoder: pyav, a GPU, or shards made with make_shards --codec vp9")


def loader_workers(requested: int, streams: int) -> int:
    """Loader workers per stream: at most the cores this process may use, shared by its streams and by the other
    processes of the job on this machine (more only thrash the cores and multiply the memory)."""
    cores = len(os.sched_getaffinity(0)) // local_processes()
    cap = max(1, cores // max(1, streams))
    if requested > cap:
        log.warning("data.num_workers=%d but %d core(s) are there for each of this process's %d stream(s): using %d "
                    "worker(s)", requested, max(1, cores), streams, cap)
        return cap
    return requested


def open_streams(cfg, micro_indices: list[int], num_micro: int, device: torch.device, mask_fns: dict | None = None,
                 skip_report=None, decoder=None, audio=None) -> list:
    """One data stream per micro-batch index of this rank (DaliStream or DataStream over VideoBatches), over
    datasets read once. cfg.data.batch_size is the micro-batch size; mask_fns (modality -> mask function) and
    audio (the clip-window spectrogram maker, AV-JEPA) come from the recipe."""
    from jepa_scale.data.stream import DataStream
    from jepa_scale.data.video_batches import VideoBatches

    kind = "pyav" if audio else resolve_decoder(cfg.data)  # DALI's readers decode video only
    log.info("video decoding: %s", kind)
    datasets, weights = open_datasets(cfg.data)
    if kind == "dali":
        from jepa_scale.data.dali_stream import DaliStream

        if device.type != "cuda":
            check_dali_cpu_codecs(cfg.data.shards)

        if weights is not None and len(datasets) > 1:
            log.warning("the DALI reader draws uniformly from all shards: dataset weights %s are not applied "
                        "(use data.decoder=pyav to mix by weight)", weights)
        tars = sorted({r.path for ds in datasets for r in ds})
        device_id = device.index or 0 if device.type == "cuda" else None
        return [DaliStream(tars, cfg, cfg.meta.seed, m, num_micro, device_id, cfg.data.dali_pipelines, mask_fns)
                for m in micro_indices]
    workers = loader_workers(cfg.data.num_workers, len(micro_indices))
    return [DataStream(VideoBatches(datasets, cfg, seed=cfg.meta.seed, micro_index=m, num_micro=num_micro,
                                    decoder=decoder, weights=weights, mask_fns=mask_fns, audio=audio),
                       workers, device.type == "cuda", skip_report=skip_report)
            for m in micro_indices]
