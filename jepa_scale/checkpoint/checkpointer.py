"""The checkpointer: when a run writes checkpoints, in which format, what it keeps, and where it resumes from.

Every checkpoint is a step folder under `<folder>/checkpoints/` (see store.py): the official single file
(`checkpoint.pth.tar`, engines without sharding; also linked as `<folder>/<write_tag>-latest.pth.tar`, where the
official tools look) or the engine's sharded files, plus our resume state (exact step, every rank's data position),
then a manifest of every file's size and checksum, written last. A resume takes the newest checkpoint whose files
all verify and says which it skipped and why. The training loop only asks `due(step)`, `save(...)`, `resume(...)`.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jepa_scale.checkpoint.manifest import checkpoint_files, digest, problems, share, write_manifest
from jepa_scale.checkpoint.official import PREFIX, CheckpointError, atomic_save, official_checkpoint, read_checkpoint
from jepa_scale.checkpoint.store import (FORMAT_ENGINES, OFFICIAL_FILE, CheckpointStore, Stored, read_extra,
                                         write_extra)
from jepa_scale.config import save_config
from jepa_scale.optim import Schedules

log = logging.getLogger(__name__)
VERSION = 3  # of our resume state: data positions per [rank][micro-batch]; 3: in jepa_scale.json beside the files


class RunFolderError(RuntimeError):
    """A fresh run was pointed at a folder that holds another run; the message names it and the ways out."""


@dataclass(frozen=True)
class CheckpointPlan:
    """What a task's checkpoints are: where they go, their cadence and retention, and the official layout of the
    single file (how a task's modules and optimizer become it, and back)."""
    folder: Path
    tag: str  # the run's CSV logs are `{tag}_r*.csv` (what marks a folder as holding a run)
    latest_name: str  # the official file beside the step folders, where the official tools look
    ipe: int
    every: int
    keep_latest: int
    save_every_freq: int  # also keep `{tag}-e{epoch}` every N epochs (-1: never)
    overwrite: bool
    read_checkpoint: str | None  # a file in `folder` to resume from instead of the newest checkpoint
    batch_size: int
    lr: Callable[[int], float]
    # (module state dicts, optimizer state, meta: epoch/loss/batch_size/world_size/lr, extra) -> the file's dict
    pack: Callable = None
    # (file's dict, source) -> {module name: state dict, "opt": optimizer state} for Engine.load_state_dicts
    unpack: Callable = None
    modules: tuple[str, ...] | None = None  # the modules a checkpoint holds (None: every module of the engine)
    resume_key: str = "meta.load_checkpoint"  # the config keys an error about the run folder names
    overwrite_key: str = "logging.overwrite"
    folder_key: str = "logging.folder"
    batch_size_key: str = "data.batch_size"

    @classmethod
    def pretraining(cls, cfg, official_state: Callable | None = None, prefix: str = PREFIX) -> "CheckpointPlan":
        """official_state: (file's dict, source) -> the dict our modules load (the recipe's, for the documented
        differences of the released files); None: as it is. prefix: of the state-dict keys in the files written
        (the method's official layout: `module.backbone.` for V-JEPA, `module.` for I-JEPA)."""
        lg, o = cfg.logging, cfg.optimization
        schedules = Schedules.from_config(o)
        return cls(folder=Path(lg.folder), tag=lg.write_tag, latest_name=f"{lg.write_tag}-latest.pth.tar", ipe=o.ipe,
                   every=lg.checkpoint_freq or o.ipe, keep_latest=lg.keep_latest, save_every_freq=cfg.meta.save_every_freq,
                   overwrite=lg.overwrite, read_checkpoint=cfg.meta.read_checkpoint, batch_size=cfg.data.batch_size,
                   lr=schedules.lr, pack=functools.partial(_pack_pretraining, prefix=prefix), unpack=official_state or (lambda ckpt, source: ckpt),
                   folder_key=cfg.folder_key)


def _pack_pretraining(states: dict, opt: dict, meta: dict, extra: dict, prefix: str) -> dict:
    return official_checkpoint(states, opt, **meta, extra=extra, prefix=prefix)


class Checkpointer:
    def __init__(self, cfg, engine, stop_step: int, plan: CheckpointPlan | None = None):
        self.cfg, self.engine, self.stop_step = cfg, engine, stop_step
        self.plan = plan = plan or CheckpointPlan.pretraining(cfg)
        self.folder, self.tag, self.ipe, self.every = plan.folder, plan.tag, plan.ipe, plan.every
        self.latest_path = self.folder / plan.latest_name
        self.store = CheckpointStore(self.folder / "checkpoints")
        self.resumed: dict | None = None  # the resume state of the checkpoint this run started from
        self.last_saved: int | None = None  # the step of the newest checkpoint of this run (written or resumed)

    @property
    def location(self) -> Path:
        """Where this run's newest checkpoint is: the official file, or the sharded checkpoints' folder."""
        return self.latest_path if self.engine.checkpoint_format == "official" else self.store.root

    # -- start-up
    def prepare(self, resume: bool):
        """Before anything is written: refuse a folder that holds another run (fresh starts), remove what
        interrupted saves of this run left, write the config (rank 0)."""
        if any(part.startswith(("your_", "$replace_this")) for part in self.folder.parts):  # V-JEPA's, I-JEPA's
            raise RunFolderError(f"{self.plan.folder_key} is {self.folder}, the official config's placeholder: set "
                                 f"it to where this run's checkpoints and logs go (--set {self.plan.folder_key}=...)")
        e, previous = self.engine, self.previous_run()
        if previous and not resume and not self.plan.overwrite:
            raise RunFolderError(
                f"{self.folder} holds another run ({', '.join(previous)}): resume it with "
                f"--set {self.plan.resume_key}=true, or choose a new {self.plan.folder_key}, or replace it with "
                f"--set {self.plan.overwrite_key}=true")
        if e.rank == 0:
            if previous and not resume:
                self._remove_previous_run()
                log.warning(f"{self.plan.overwrite_key}: removed the previous run in %s (%s)", self.folder, ", ".join(previous))
            for path in self.store.stale() + list(self.folder.glob(f".{self.latest_path.name}.tmp-*")):
                log.info("removing %s, left by an interrupted save", path)
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            self.folder.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.folder / "config.yaml")  # every rank holds the same: rank 0 writes it
        e.barrier()

    def previous_run(self) -> list[str]:
        """What of an earlier run the folder holds: checkpoints and logs."""
        found = [p for p in (self.store.root, self.latest_path) if p.exists() and (p.is_file() or self.store.any())]
        found += sorted(self.folder.glob(f"{self.tag}_r*.csv"))
        return [str(p.relative_to(self.folder)) for p in found]

    def _remove_previous_run(self):
        shutil.rmtree(self.store.root, ignore_errors=True)
        shutil.rmtree(self.folder / "tensorboard", ignore_errors=True)
        for path in [self.latest_path, *self.folder.glob(f"{self.tag}_r*.csv"), *self.folder.glob("skipped_videos*")]:
            path.unlink(missing_ok=True)

    # -- saving
    def due(self, step: int) -> bool:
        """Whether the run checkpoints after `step` steps."""
        return step % self.every == 0 or step == self.stop_step

    def save(self, step: int, loss: float, streams: list):
        """Every rank calls it (the data positions are gathered from all, every rank writes its part)."""
        e, path = self.engine, self.store.path(step)
        extra = {"step": step, "data": e.gather_object([s.state_dict() for s in streams]), "version": VERSION,
                 "epoch": step // self.ipe, "loss": loss, "batch_size": self.plan.batch_size,
                 "world_size": e.world_size, "lr": self.plan.lr(step)}
        if e.rank == 0:
            shutil.rmtree(path, ignore_errors=True)  # an incomplete save of this step, or an older run's
            path.mkdir(parents=True)
        e.barrier()
        if e.checkpoint_format == "official":
            if e.rank == 0:
                meta = {k: extra[k] for k in ("epoch", "loss", "batch_size", "world_size", "lr")}
                states = {n: st for n, st in e.state_dicts().items() if n in (self.plan.modules or (n,))}
                atomic_save(self.plan.pack(states, e.optimizer.state_dict(), meta, extra), path / OFFICIAL_FILE)
        else:
            e.save_sharded(path, extra)
        if e.rank == 0:
            write_extra(path, extra)
        e.barrier()
        self._seal(path, step)
        self.last_saved = step
        log.info("checkpoint at step %d: %s", step, path)

    def _seal(self, path: Path, step: int):
        """The manifest, once every rank's files are there; then pointers, epoch copies and retention."""
        e = self.engine
        names = checkpoint_files(path)
        parts = e.gather_object({n: digest(path / n) for n in share(names, e.rank, e.world_size)})
        if e.rank == 0:
            files = {n: d for part in parts for n, d in part.items()}
            write_manifest(path, files, {"step": step, "format": e.checkpoint_format, "world_size": e.world_size,
                                         "batch_size": self.plan.batch_size})
            self.store.point_latest(path)
            if e.checkpoint_format == "official":
                _link(path / OFFICIAL_FILE, self.latest_path)
            if self._keeps_epoch_copy(step):
                epoch = step // self.ipe
                if e.checkpoint_format == "official":
                    _link(path / OFFICIAL_FILE, self.folder / f"{self.tag}-e{epoch}.pth.tar")
                else:
                    _copy_folder(path, self.store.root / f"{self.tag}-e{epoch}")
            for old in self.store.prune(self.plan.keep_latest):
                log.info("removed %s (keep_latest=%d)", old, self.plan.keep_latest)
        e.barrier()

    def _keeps_epoch_copy(self, step: int) -> bool:
        every = self.plan.save_every_freq
        return every > 0 and step % self.ipe == 0 and (step // self.ipe) % every == 0

    # -- resuming
    def resume(self, streams: list) -> int:
        """Load the checkpoint this run resumes from into the engine and the streams; the step to continue at
        (0, with a log line, when there is none yet: one command line serves the first start and every requeue)."""
        name = self.plan.read_checkpoint
        if name:
            return self._resume_file(self.folder / name, streams)
        found, skipped = self._newest_intact()
        if found is None:
            found = self.store.legacy()
        if found is not None:
            return self._resume_stored(found, streams)
        if self.latest_path.is_file() and not any(os.path.samefile(self.latest_path, p) for p in skipped):
            return self._resume_file(self.latest_path, streams)  # the official code's, or an imported one
        if skipped:
            raise CheckpointError(f"{self.store.root}: no checkpoint is intact (see the warnings above); the run "
                                  f"cannot resume: start it in a new logging.folder")
        log.info("no checkpoint in %s yet: starting fresh", self.folder)
        return 0

    def start_from(self, path: str, key: str):
        """A fresh run's weights and optimizer state from another run's checkpoint file (the V2 cooldown's
        pretraining checkpoint); the step, data position and schedules start at 0, as the official anneal start."""
        path = Path(path)
        if path.is_dir():
            raise CheckpointError(f"{key}: {path} is a folder: point it at a checkpoint file (a run's "
                                  f"jepa-latest.pth.tar or jepa-e{{epoch}}.pth.tar, an official .pt, or an export of a "
                                  f"sharded run: python -m jepa_scale.checkpoint export {path} OUT.pth.tar)")
        self._load_file(path, read_checkpoint(path))
        log.info("starting from %s (%s: weights and optimizer state; step 0)", path, key)

    def _newest_intact(self) -> tuple[Stored | None, list[Path]]:
        """The newest complete checkpoint whose files all verify (every rank checks its share), and the files of
        those skipped."""
        e, skipped = self.engine, []
        for stored in self.store.complete():
            names = sorted(stored.manifest["files"])
            bad = [p for part in e.gather_object(problems(stored.path, stored.manifest,
                                                          share(names, e.rank, e.world_size))) for p in part]
            if not bad:
                return stored, skipped
            log.warning("skipping %s: %s", stored.path, "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
            skipped += [stored.path / n for n in names if (stored.path / n).is_file()]
        return None, skipped

    def _resume_stored(self, stored: Stored, streams: list) -> int:
        e = self.engine
        fmt = (stored.manifest or {}).get("format", e.checkpoint_format)
        if fmt == "official":
            self._load_file(stored.path / OFFICIAL_FILE, read_checkpoint(stored.path / OFFICIAL_FILE))
        elif fmt != e.checkpoint_format:
            raise CheckpointError(
                f"{stored.path} was written by distributed.engine={FORMAT_ENGINES[fmt]} ({fmt} format); this run "
                f"uses the {FORMAT_ENGINES[e.checkpoint_format]} engine: resume with "
                f"distributed.engine={FORMAT_ENGINES[fmt]}, or export it (python -m jepa_scale.checkpoint export "
                f"{self.folder} OUT.pth.tar) and import that into a new run folder")
        else:
            e.load_sharded(stored.path)
        extra = read_extra(stored.path)
        return self._restore_position(extra, stored.path, streams)

    def _resume_file(self, path: Path, streams: list) -> int:
        """An official-layout file: ours, the official code's, or an export (also how a sharded run starts)."""
        ckpt = read_checkpoint(path)
        self._load_file(path, ckpt)
        if ckpt.get("jepa_scale"):
            return self._restore_position(ckpt["jepa_scale"], path, streams)
        # an official checkpoint: it stores whole epochs only, and no data position
        step = ckpt["epoch"] * self.ipe
        for stream in streams:
            stream.load_state_dict({"next_batch": step})
        self.resumed = {"step": step, "loss": float(ckpt.get("loss", 0.0))}
        log.warning("%s has no data position (official checkpoint): continuing at batch %d", path, step)
        return step

    def _load_file(self, path: Path, ckpt: dict):
        """An official-layout file's modules and optimizer state into the engine (the task's layout, unpacked)."""
        unpacked = self.plan.unpack(ckpt, str(path))
        if self.plan.modules is None:
            self.engine.load_state_dicts(unpacked, str(path))
        else:
            self.engine.load_state_dicts(unpacked, str(path), names=self.plan.modules)

    def _restore_position(self, ours: dict, source, streams: list) -> int:
        e = self.engine
        data = ours["data"]
        if isinstance(data, dict):  # version 1: one stream, one rank
            data = [[data]]
        if len(data) != e.world_size or len(data[e.rank]) != len(streams):
            raise CheckpointError(f"{source} was written by {len(data)} ranks x {len(data[0])} micro-batches; this "
                                  f"run has {e.world_size} x {len(streams)}: the data positions cannot be mapped "
                                  f"(resume with the same number of processes and distributed.micro_batch_size)")
        if ours.get("batch_size", self.plan.batch_size) != self.plan.batch_size:
            log.warning("%s was trained with %s=%s; this run uses %d: the data order and the losses will differ "
                        "from an uninterrupted run", source, self.plan.batch_size_key, ours["batch_size"],
                        self.plan.batch_size)
        for stream, state in zip(streams, data[e.rank]):
            stream.load_state_dict(state)
        self.resumed, self.last_saved = ours, ours["step"]
        log.info("resumed from %s at step %d", source, ours["step"])
        return ours["step"]


def _link(src: Path, dst: Path):
    """dst becomes src's content atomically: a hard link (no second copy on disk), else a copy."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _copy_folder(src: Path, dst: Path):
    """Copy a checkpoint folder so that `dst` appears only once complete."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
