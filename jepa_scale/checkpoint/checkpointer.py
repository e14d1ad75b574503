"""The checkpointer: when a run writes checkpoints, in which format, and where it resumes from.

Engines with sharded checkpoints write their own format under `<folder>/checkpoints/`; the others write one
official-layout file `<folder>/<write_tag>-latest.pth.tar` (rank 0). Either way the file carries our resume state
(exact step, every rank's data position) beside the official keys, and `meta.save_every_freq` keeps a copy every
N epochs. The training loop only asks `due(step)`, `save(...)` and `resume(...)`.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from jepa_scale.checkpoint.official import atomic_save, official_checkpoint, read_checkpoint
from jepa_scale.config import save_config
from jepa_scale.optim import Schedules

log = logging.getLogger(__name__)
VERSION = 2  # of our resume state: data positions per [rank][micro-batch]


class Checkpointer:
    def __init__(self, cfg, engine, stop_step: int):
        self.cfg, self.engine, self.stop_step = cfg, engine, stop_step
        self.folder, self.tag = Path(cfg.logging.folder), cfg.logging.write_tag
        self.ipe = cfg.optimization.ipe
        self.every = cfg.logging.checkpoint_freq or self.ipe
        self.schedules = Schedules.from_config(cfg.optimization)
        self.latest_path = self.folder / f"{self.tag}-latest.pth.tar"
        self.sharded_root = self.folder / "checkpoints"

    @property
    def location(self) -> Path:
        """Where this run's checkpoints go: one official file, or the sharded checkpoints' folder."""
        return self.sharded_root if self.engine.sharded_checkpoints else self.latest_path

    def write_config(self):
        """The resolved config beside the checkpoints (rank 0 only: every rank holds the same)."""
        if self.engine.rank == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.folder / "config.yaml")

    def due(self, step: int) -> bool:
        """Whether the run checkpoints after `step` steps."""
        return step % self.every == 0 or step == self.stop_step

    def _keeps_epoch_copy(self, step: int) -> bool:
        every = self.cfg.meta.save_every_freq
        return every > 0 and step % self.ipe == 0 and (step // self.ipe) % every == 0

    def save(self, step: int, loss: float, streams: list):
        """Every rank calls it (the data positions are gathered from all)."""
        e = self.engine
        extra = {"step": step, "data": e.gather_object([s.state_dict() for s in streams]), "version": VERSION}
        meta = dict(epoch=step // self.ipe, loss=loss, batch_size=self.cfg.data.batch_size, world_size=e.world_size,
                    lr=self.schedules.lr(step))
        if e.sharded_checkpoints:
            path = Path(e.save_sharded(self.sharded_root, step, {**extra, **meta}))
            copy = self.sharded_root / f"{self.tag}-e{step // self.ipe}"
        else:
            path = self.latest_path
            if e.rank == 0:
                atomic_save(official_checkpoint(e.state_dicts(), e.optimizer.state_dict(), **meta, extra=extra), path)
            copy = self.folder / f"{self.tag}-e{step // self.ipe}.pth.tar"
        if self._keeps_epoch_copy(step):
            e.barrier()  # every rank's part is written before rank 0 copies it
            if e.rank == 0:
                _copy(path, copy)
        log.info("checkpoint at step %d: %s", step, path)

    def resume(self, streams: list) -> int:
        """Load the checkpoint this run resumes from into the engine and the streams; the step to continue at."""
        name, e = self.cfg.meta.read_checkpoint, self.engine
        ours = e.load_sharded(self.sharded_root) if e.sharded_checkpoints and not name else None
        if ours is not None:
            return self._restore_position(ours, self.sharded_root, streams)
        # an official-layout file: ours, the official code's, or an export (also how a sharded run starts from one)
        path = self.folder / name if name else self.latest_path
        ckpt = read_checkpoint(path)
        e.load_state_dicts(ckpt, str(path))
        if ckpt.get("jepa_scale"):
            return self._restore_position(ckpt["jepa_scale"], path, streams)
        # an official checkpoint: it stores whole epochs only, and no data position
        step = ckpt["epoch"] * self.ipe
        for stream in streams:
            stream.load_state_dict({"next_batch": step})
        log.warning("%s has no data position (official checkpoint): continuing at batch %d", path, step)
        return step

    def _restore_position(self, ours: dict, source, streams: list) -> int:
        e = self.engine
        data = ours["data"]
        if isinstance(data, dict):  # version 1: one stream, one rank
            data = [[data]]
        if len(data) != e.world_size or len(data[e.rank]) != len(streams):
            raise ValueError(f"{source} was written by {len(data)} ranks x {len(data[0])} micro-batches; this run "
                             f"has {e.world_size} x {len(streams)}: the data positions cannot be mapped")
        for stream, state in zip(streams, data[e.rank]):
            stream.load_state_dict(state)
        log.info("resumed from %s at step %d", source, ours["step"])
        return ours["step"]


def _copy(src: Path, dst: Path):
    """Copy a checkpoint file or folder so that `dst` appears only once complete."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if src.is_dir():
        shutil.copytree(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
