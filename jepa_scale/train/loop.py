"""The pretraining loop. Components are built in `Trainer.__init__`; `run()` is the loop itself."""
from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import shutil
import time
from pathlib import Path

import torch

from jepa_scale.checkpoint import atomic_save, pretrain_checkpoint, read_checkpoint
from jepa_scale.config import save_config
from jepa_scale.data.sources import open_streams
from jepa_scale.distributed.engine import DDPEngine, Engine, FSDPEngine, SingleEngine
from jepa_scale.distributed.env import detect, init_process_group
from jepa_scale.models import build_encoder, build_predictor
from jepa_scale.models.attention import attention_kernels
from jepa_scale.models.vit import compile_blocks
from jepa_scale.monitor.device_peak import device_peak_tflops
from jepa_scale.monitor.flops import StepFlops
from jepa_scale.monitor.metrics import Metrics
from jepa_scale.train.objective import jepa_loss, predict, std_regulariser, target_features
from jepa_scale.train.optim import make_optimizer, reinit_like_v1_train, set_lr_wd
from jepa_scale.train.schedules import Schedules

log = logging.getLogger(__name__)


class NonFiniteTraining(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss or gradient norm (each was skipped)."""


def build_models(cfg):
    """Encoder, predictor and target as the V1 train script makes them (seeded by meta.seed)."""
    torch.manual_seed(cfg.meta.seed)
    encoder = build_encoder(cfg)
    predictor = build_predictor(cfg, encoder)
    reinit_like_v1_train(encoder, predictor)
    target = copy.deepcopy(encoder)
    if cfg.distributed.compile:
        for blocks in (encoder.blocks, predictor.predictor_blocks, target.blocks):
            compile_blocks(blocks, cfg.distributed.compile_backend)
    return encoder, predictor, target


def default_engine(cfg, local_rank: int | None = None) -> Engine:
    """The configured engine; `auto` follows the launcher: one process -> single, the deepspeed launcher ->
    deepspeed, several processes otherwise (torchrun, srun) -> ddp. local_rank: deepspeed's `--local_rank`."""
    env = detect(local_rank_arg=local_rank)
    device = init_process_group(env)
    kind = cfg.distributed.engine
    if kind == "auto":
        kind = "single" if env.world_size == 1 else "deepspeed" if env.launcher == "deepspeed" else "ddp"
    if kind == "single":
        if env.world_size > 1:
            raise ValueError(f"distributed.engine=single but the launcher started {env.world_size} processes")
        return SingleEngine(device, cfg.meta.dtype)
    if env.world_size == 1 and not torch.distributed.is_initialized():
        raise ValueError(f"distributed.engine={kind} needs a process group: launch with torchrun or deepspeed")
    if kind == "fsdp":
        return FSDPEngine(device, cfg.meta.dtype, cfg.distributed.reshard_after_forward, cfg.distributed.hsdp_replicas)
    if kind == "deepspeed":
        micro, accum = micro_batches(cfg)
        if accum != 1:
            raise ValueError("distributed.engine=deepspeed does not take distributed.micro_batch_size yet")
        from jepa_scale.distributed.deepspeed_engine import DeepSpeedEngine

        return DeepSpeedEngine(device, cfg.meta.dtype, cfg.distributed.zero_stage, micro,
                               cfg.distributed.offload_optimizer)
    return DDPEngine(device, cfg.meta.dtype)


def micro_batches(cfg) -> tuple[int, int]:
    """(micro-batch size, micro-batches accumulated per step on each device)."""
    micro = cfg.distributed.micro_batch_size or cfg.data.batch_size
    return micro, cfg.data.batch_size // micro


class Trainer:
    def __init__(self, cfg, engine: Engine | None = None, decoder=None, local_rank: int | None = None):
        self.cfg = cfg
        self.folder = Path(cfg.logging.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.folder / "config.yaml")
        self.engine = engine or default_engine(cfg, local_rank)
        self.engine.setup(*build_models(cfg), optimizer_factory=make_optimizer)
        self.schedules = Schedules.from_config(cfg.optimization)
        o = cfg.optimization
        self.stop_step = min(o.epochs * o.ipe, o.max_steps or o.epochs * o.ipe)
        self.latest_path = self.folder / f"{cfg.logging.write_tag}-latest.pth.tar"
        self.sharded_root = self.folder / "checkpoints"
        # micro-batch m of rank r is global micro-batch r * accum + m: the same data and masks whatever the split
        micro, accum = micro_batches(cfg)
        micro_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=micro))
        e = self.engine
        report = self.folder / ("skipped_videos.tsv" if e.world_size == 1 else f"skipped_videos_r{e.rank}.tsv")
        self.streams = open_streams(micro_cfg, [e.rank * accum + m for m in range(accum)], e.world_size * accum,
                                    e.device, skip_report=report, decoder=decoder)
        self.step = 0
        self.bad_streak = torch.zeros((), dtype=torch.long, device=self.engine.device)
        self.skipped_steps = torch.zeros((), dtype=torch.long, device=self.engine.device)
        if cfg.meta.load_checkpoint:
            self.resume()
        enc, pred, _ = self.engine.modules()
        self.flop_model = StepFlops(enc, pred)
        self.metrics = Metrics(self.folder, cfg.logging.write_tag, self.engine.rank, cfg.logging.tensorboard,
                               cfg.logging.log_freq, cfg.data.batch_size * self.engine.world_size,
                               resume=cfg.meta.load_checkpoint, tokens_per_sample=enc.num_patches,
                               device=self.engine.device, peak_tflops=device_peak_tflops(self.engine.device))

    # -- checkpoints
    def save(self, loss: float):
        o, step = self.cfg.optimization, self.step
        data = [s.state_dict() for s in self.streams]
        if self.engine.world_size > 1:  # every rank's position, so each resumes where it was
            gathered = [None] * self.engine.world_size
            torch.distributed.all_gather_object(gathered, data)
            data = gathered
        else:
            data = [data]
        extra = {"step": step, "data": data, "version": 2}
        if self.engine.sharded_checkpoints:
            extra.update(epoch=step // o.ipe, loss=loss, batch_size=self.cfg.data.batch_size,
                         world_size=self.engine.world_size, lr=self.schedules.lr(step))
            path = self.engine.save_sharded(self.sharded_root, step, extra)
            log.info("sharded checkpoint at step %d: %s", step, path)
            return
        ckpt = pretrain_checkpoint(**self.engine.state_dict_parts(), epoch=step // o.ipe, loss=loss,
                                   batch_size=self.cfg.data.batch_size, world_size=self.engine.world_size,
                                   lr=self.schedules.lr(step), extra=extra)
        if self.engine.rank == 0:
            atomic_save(ckpt, self.latest_path)
            every = self.cfg.meta.save_every_freq
            if every > 0 and step % o.ipe == 0 and (step // o.ipe) % every == 0:
                shutil.copyfile(self.latest_path, self.folder / f"{self.cfg.logging.write_tag}-e{step // o.ipe}.pth.tar")
        log.info("checkpoint at step %d: %s", step, self.latest_path)

    def resume(self):
        name, e = self.cfg.meta.read_checkpoint, self.engine
        ours = e.load_sharded(self.sharded_root) if e.sharded_checkpoints and not name else None
        if ours is not None:
            self._restore_position(ours, self.sharded_root)
            return
        # an official-layout file: ours, the official code's, or an export (also how a sharded run starts from one)
        path = self.folder / name if name else self.latest_path
        ckpt = read_checkpoint(path)
        e.load_parts(ckpt, str(path))
        ours = ckpt.get("jepa_scale")
        if ours:
            self._restore_position(ours, path)
        else:  # an official checkpoint: it stores whole epochs only, and no data position
            self.step = ckpt["epoch"] * self.cfg.optimization.ipe
            for stream in self.streams:
                stream.load_state_dict({"next_batch": self.step})
            log.warning("%s has no data position (official checkpoint): continuing at batch %d", path, self.step)

    def _restore_position(self, ours: dict, source):
        e = self.engine
        self.step = ours["step"]
        data = ours["data"]
        if isinstance(data, dict):  # version 1: one stream, one rank
            data = [[data]]
        if len(data) != e.world_size or len(data[e.rank]) != len(self.streams):
            raise ValueError(f"{source} was written by {len(data)} ranks x {len(data[0])} micro-batches; this run "
                             f"has {e.world_size} x {len(self.streams)}: the data positions cannot be mapped")
        for stream, state in zip(self.streams, data[e.rank]):
            stream.load_state_dict(state)
        log.info("resumed from %s at step %d", source, self.step)

    # -- one step
    def micro_step(self, batch, scale: float, last: bool):
        e = self.engine
        with e.accumulate(last):
            with e.autocast():
                targets, target_std = target_features(e.target, batch.clips, batch.masks_tgt)
                preds = predict(e.encoder, e.predictor, batch.clips, batch.masks_ctx, batch.masks_tgt)
                loss = jepa_loss(preds, targets, self.cfg.loss.loss_exp)
                if self.cfg.loss.reg_coeff:
                    loss = loss + self.cfg.loss.reg_coeff * std_regulariser(preds)
            e.backward(loss * scale)
        return loss.detach(), target_std

    def train_step(self, batches, lr: float, wd: float, momentum: float, clip):
        """One optimizer step over this rank's micro-batches (gradients averaged over them and over ranks)."""
        e = self.engine
        set_lr_wd(e.optimizer, lr, wd)
        out = [self.micro_step(b, 1.0 / len(batches), i == len(batches) - 1) for i, b in enumerate(batches)]
        loss = e.all_reduce_mean(torch.stack([o[0] for o in out]).mean())
        target_std = torch.stack([o[1] for o in out]).mean()
        grad_norm, finite = e.step(clip, loss)
        e.ema_update(momentum, apply=finite)
        # device-side counters: read only when the metrics flush, never per step
        self.bad_streak = (self.bad_streak + 1) * (~finite)
        self.skipped_steps = self.skipped_steps + (~finite)
        return loss.detach(), grad_norm, target_std

    @property
    def checkpoint_location(self) -> Path:
        """Where this run's checkpoints go: one official file, or the sharded checkpoints' folder."""
        return self.sharded_root if self.engine.sharded_checkpoints else self.latest_path

    def check_finite(self):
        """Called after a metrics flush (the host already synced there)."""
        streak, limit = int(self.bad_streak), self.cfg.optimization.max_nonfinite_steps
        if streak >= limit:
            where = self.checkpoint_location
            last = (f"the last checkpoint, in {where}, holds the model from before them"
                    if where.exists() else "no checkpoint was written yet")
            raise NonFiniteTraining(
                f"step {self.step}: {streak} consecutive steps had a NaN/inf loss or gradient norm and were skipped "
                f"(optimization.max_nonfinite_steps={limit}); {last}. Lower optimization.lr, check the data, or "
                f"raise the limit.")

    def log_setup(self):
        e, enc = self.engine, self.engine.modules()[0]
        log.info("training steps %d..%d on %s, engine %s, %d rank(s)", self.step, self.stop_step, e.device,
                 type(e).__name__, e.world_size)
        backend = enc.blocks[0].attn.backend
        dtype = e.amp_dtype or torch.float32
        kernels = attention_kernels(e.device, dtype, enc.embed_dim // enc.num_heads)
        log.info("attention backend %s runs: %s (all backends here: %s)", backend, kernels[backend], kernels)

    def run(self) -> dict:
        o, ckpt_every = self.cfg.optimization, self.cfg.logging.checkpoint_freq or self.cfg.optimization.ipe
        if self.engine.rank == 0:
            self.log_setup()
        loss = torch.zeros(())
        while self.step < self.stop_step:
            t0 = time.perf_counter()
            batches = [next(s).to(self.engine.device) for s in self.streams]
            self.metrics.add_data_wait(time.perf_counter() - t0)
            lr, wd, m = self.schedules.at_iteration(self.step)
            epoch = self.step // o.ipe
            clip = o.clip_grad if epoch > o.warmup else None
            loss, grad_norm, target_std = self.train_step(batches, lr, wd, m, clip)
            flushed = self.metrics.log(self.step, epoch, {"loss": loss, "grad_norm": grad_norm,
                                                          "target_std": target_std, "skipped_steps": self.skipped_steps},
                                       {"lr": lr, "wd": wd, "momentum": m,
                                        "flops": sum(self.flop_model(b) for b in batches)})
            self.step += 1
            if flushed:
                self.check_finite()
            if self.step % ckpt_every == 0 or self.step == self.stop_step:
                self.metrics.flush()
                self.save(float(loss))
        self.metrics.close()
        skipped = collections.Counter()
        for s in self.streams:
            s.close()
            skipped.update(s.skipped)
        return {"step": self.step, "loss": float(loss), "checkpoint": str(self.checkpoint_location),
                "csv": str(self.metrics.csv_path), "tensorboard": str(self.folder / "tensorboard"),
                "skipped_videos": dict(skipped)}


def train(cfg, **kw) -> dict:
    return Trainer(cfg, **kw).run()
