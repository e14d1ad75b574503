"""data -> task.train_step -> metrics -> checkpointer. `Trainer.__init__` composes the parts the config names (a
recipe by `app`, a task, an engine); `run()` is the loop, and it knows none of them by kind."""
from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import time

import torch

from jepa_scale.checkpoint.checkpointer import Checkpointer, CheckpointPlan
from jepa_scale.data.seeds import micro_batch_ids
from jepa_scale.distributed import fast_step
from jepa_scale.distributed.build import build_engine, micro_batches
from jepa_scale.distributed.env import local_processes, post_step
from jepa_scale.distributed.engine import Engine
from jepa_scale.launch.preemption import REQUEUE_SIGNALS, Preempted, PreemptionFlag, requeue_job
from jepa_scale.models.attention import attention_kernels
from jepa_scale.monitor.device_peak import device_peak_tflops
from jepa_scale.monitor.metrics import Metrics
from jepa_scale.plan import check_fits
from jepa_scale.recipes import RECIPES
from jepa_scale.tasks import TASKS

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, cfg, engine: Engine | None = None, decoder=None, local_rank: int | None = None,
                 task: str = "pretrain"):
        self.cfg = cfg
        o = cfg.optimization
        self.ipe, self.stop_step = o.ipe, min(o.epochs * o.ipe, o.max_steps or o.epochs * o.ipe)
        self.preemption = PreemptionFlag().install()  # first: a signal during set-up is not lost
        self.owns_engine = engine is None  # then the run also ends the process group it joined
        self.engine = e = engine or build_engine(cfg, local_rank)
        if cfg.distributed.check_memory:
            check_fits(cfg, e.device, e.world_size, local_processes())
        self.recipe = RECIPES.get(cfg.recipe)(cfg)
        model_set = self.recipe.build_models()
        if cfg.distributed.compile:
            model_set.compile_units(cfg.distributed.compile_backend)
        if cfg.distributed.cpu_fast_step:
            fast_step.check_engine(e)
            fast_step.prepare(model_set, cfg.distributed.compile_backend)
        e.setup(model_set, self.recipe.optimizer)
        self.task = TASKS.get(task)(cfg, self.recipe, e)
        plan = CheckpointPlan.pretraining(cfg, self.recipe.official_state, self.recipe.checkpoint_prefix)
        self.checkpointer = Checkpointer(cfg, e, self.stop_step, plan)
        self.checkpointer.prepare(resume=cfg.resumes)
        self.streams = self.open_streams(decoder)
        self.step = self.checkpointer.resume(self.streams) if cfg.resumes else 0
        if self.step == 0 and cfg.start_checkpoint:
            self.checkpointer.start_from(cfg.start_checkpoint, "optimization.anneal_ckpt")
        self.metrics = Metrics(self.checkpointer.folder, cfg.logging.write_tag, self.task.columns, e.rank,
                               cfg.logging.tensorboard, cfg.logging.log_freq, cfg.data.batch_size * e.world_size,
                               resume_step=self.step if cfg.resumes else None, device=e.device,
                               tokens_per_sample=self.recipe.tokens_per_sample(e.modules),
                               peak_tflops=device_peak_tflops(e.device))

    def open_streams(self, decoder=None) -> list:
        """One stream per micro-batch of this rank (the seed contract is in jepa_scale.data.seeds)."""
        e, cfg = self.engine, self.cfg
        micro, accum = micro_batches(cfg)
        micro_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=micro))
        folder = self.checkpointer.folder
        report = folder / ("skipped_videos.tsv" if e.world_size == 1 else f"skipped_videos_r{e.rank}.tsv")
        return self.recipe.open_streams(micro_cfg, micro_batch_ids(e.rank, accum), e.world_size * accum, e.device,
                                        skip_report=report, decoder=decoder)

    def next_batches(self) -> list:
        t0 = time.perf_counter()
        batches = [next(s).to(self.engine.device) for s in self.streams]
        self.metrics.add_data_wait(time.perf_counter() - t0)
        return batches

    def run(self) -> dict:
        if self.engine.rank == 0:
            self.log_setup()
        scalars = {}
        while self.step < self.stop_step:
            scalars, host_scalars = self.task.train_step(self.step, self.next_batches())
            flushed = self.metrics.log(self.step, self.step // self.ipe, scalars, host_scalars)
            self.step += 1
            if flushed:  # the host synced: the moment to read device counters
                self.task.after_flush(self.step, self.checkpointer.location)
            if self.checkpointer.due(self.step):
                self.metrics.flush()
                self.checkpointer.save(self.step, float(scalars["loss"]), self.streams)
            if flushed:  # and to agree on preemption (one collective)
                self.stop_if_preempted(scalars)
        if not scalars:  # nothing left to train: the run had finished
            log.info("the run had already finished at step %d", self.step)
        return self.finish(float(scalars["loss"]) if scalars else (self.checkpointer.resumed or {}).get("loss", 0.0))

    def stop_if_preempted(self, scalars: dict):
        """When any rank got a preemption signal: all save this step (unless just saved), rank 0 asks for a
        requeue, and the run ends with Preempted."""
        post_step(self.engine.rank, self.step)  # so that a collective timeout can name a rank that stopped
        signum = self.preemption.agreed(self.engine)
        if not signum:
            return
        if self.checkpointer.last_saved != self.step:
            self.metrics.flush()
            self.checkpointer.save(self.step, float(scalars["loss"]), self.streams)
        log.warning("preempted (%s) at step %d: checkpoint in %s%s", signal.Signals(signum).name, self.step,
                    self.checkpointer.location, "; requeueing" if signum in REQUEUE_SIGNALS else "")
        # SLURM ends the job as soon as the requeue is accepted: the line above is what its log keeps
        requeued = requeue_job() if self.engine.rank == 0 and signum in REQUEUE_SIGNALS else None
        self.engine.barrier()  # no rank exits before rank 0 has asked for the requeue
        self.finish(float(scalars["loss"]))
        raise Preempted(signum, self.step, self.checkpointer.location, requeued)

    def finish(self, loss: float) -> dict:
        self.metrics.close()
        skipped = collections.Counter()
        for s in self.streams:
            s.close()
            skipped.update(s.skipped)
        self.preemption.uninstall()
        if self.owns_engine:
            self.engine.close()
        folder = self.checkpointer.folder
        return {"step": self.step, "loss": loss, "rank": self.engine.rank, "checkpoint": str(self.checkpointer.location),
                "csv": str(self.metrics.csv_path), "tensorboard": str(folder / "tensorboard"),
                "skipped_videos": dict(skipped)}

    def log_setup(self):
        e = self.engine
        log.info("training steps %d..%d on %s, recipe %s, engine %s, %d rank(s)", self.step, self.stop_step,
                 e.device, self.cfg.recipe, type(e).__name__, e.world_size)
        for name, module in e.modules.items():
            backend = module.attention_backend()
            if backend is not None and name in e.model_set.trainable:  # a frozen copy runs the same kernels
                kernels = attention_kernels(e.device, e.amp_dtype or torch.float32, module.attention_head_dim())
                log.info("%s: attention backend %s runs: %s (all backends here: %s)", name, backend,
                         kernels[backend], kernels)


def train(cfg, **kw) -> dict:
    return Trainer(cfg, **kw).run()
