"""A frozen-backbone probe run: the encoder from the config's pretrain section, the probe heads, their data, on the
engines, checkpointer, metrics and preemption of pretraining. `ProbeRun.__init__` composes the parts; `run()` is
the loop (train an epoch, validate, log, checkpoint), and `validate_only()` the official `val_only` mode."""
from __future__ import annotations

import dataclasses
import logging

import torch

from jepa_scale.checkpoint import read_checkpoint
from jepa_scale.checkpoint.checkpointer import Checkpointer, CheckpointPlan
from jepa_scale.checkpoint.probe_layout import load_probe_checkpoint
from jepa_scale.distributed.build import make_engine
from jepa_scale.distributed.env import post_step
from jepa_scale.distributed.model_set import ModelSet
from jepa_scale.evals import inputs
from jepa_scale.evals.backbone import load_encoder
from jepa_scale.evals.feature_cache import FeatureCache, cache_key, data_digest, tensors_digest
from jepa_scale.evals.probe_state import GRID, pack_probe, unpack_probe
from jepa_scale.evals.scores import EpochScores, selected
from jepa_scale.evals.spec import eval_spec
from jepa_scale.launch.preemption import REQUEUE_SIGNALS, Preempted, PreemptionFlag, requeue_job
from jepa_scale.models.attentive_pooler import ProbeGrid, build_probe
from jepa_scale.monitor.eval_log import EvalLog, write_results
from jepa_scale.monitor.metrics import Metrics
from jepa_scale.tasks.probe import Probe, probe_optimizer

log = logging.getLogger(__name__)


class Position:
    """The data position a probe checkpoint stores: the next training iteration, and the epoch's running scores."""

    def __init__(self):
        self.step, self.scores = 0, None

    def state_dict(self) -> dict:
        return {"next_batch": self.step, "scores": self.scores.state_dict() if self.scores else None}

    def load_state_dict(self, state: dict):
        self.step, self.scores = state["next_batch"], state.get("scores")


def _engine_dtype(spec) -> str:
    # float16 needs a GradScaler, which the engines refuse: the official float16 mode autocasts in the task
    return "float32" if spec.amp == "float16" else spec.amp


class ProbeRun:
    def __init__(self, cfg, engine=None, local_rank: int | None = None, encoder_checkpoint: str | None = None):
        """encoder_checkpoint: overrides the config's pretrained file ("" = a randomly initialised backbone)."""
        self.cfg, self.spec = cfg, eval_spec(cfg)
        spec, p = self.spec, self.spec.probe
        self.preemption = PreemptionFlag().install()
        self.owns_engine = engine is None
        self.engine = e = engine or make_engine(spec.distributed, _engine_dtype(spec), (spec.batch_size, 1), local_rank,
                                                replicated_only=True)
        self.encoder = load_encoder(spec, encoder_checkpoint, seed=p.seed)
        e.setup(ModelSet({GRID: self.build_grid()}, {"encoder": self.encoder}),
                lambda modules: probe_optimizer(modules[GRID], spec.decay_norms_and_biases))
        self.encoder = e.modules["encoder"]
        self.workers = inputs_workers(spec)
        self.datasets = {s: inputs.labelled_dataset(spec, s) for s in ("train", "val")}
        n_train = len(self.datasets["train"])
        self.ipe = inputs.batches_per_epoch(n_train, e.world_size, spec.batch_size)
        if p.max_train_batches:
            self.ipe = min(self.ipe, p.max_train_batches)
        self.stop_step = spec.epochs * self.ipe
        self.task = Probe(spec, e, self.ipe)
        self.position = Position()
        self.checkpointer = Checkpointer(cfg, e, self.stop_step, plan=self.plan())
        self.results_path = spec.folder / "eval_results.json"
        self.step, self.sources, self.metrics, self.log = 0, {}, None, None
        self.failures: dict[str, int] = {}  # replaced samples per split

    def build_grid(self) -> ProbeGrid:
        spec = self.spec
        heads = spec.probe_num_heads or self.encoder.num_heads
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.probe.seed)
            return ProbeGrid([build_probe(spec.probe_layout, self.encoder.embed_dim, heads, spec.probe_depth,
                                          spec.num_classes) for _ in spec.heads])

    def plan(self) -> CheckpointPlan:
        spec = self.spec
        return CheckpointPlan(
            folder=spec.folder, tag=spec.csv_tag,
            latest_name=spec.latest_name, ipe=self.ipe, every=self.ipe, keep_latest=spec.probe.keep_latest,
            save_every_freq=-1, overwrite=spec.probe.overwrite, read_checkpoint=None, batch_size=spec.batch_size,
            lr=lambda step: self.task.schedules[0].lr(step), pack=pack_probe(spec.probe_layout), unpack=unpack_probe,
            modules=(GRID,), resume_key="resume_checkpoint", overwrite_key="probe.overwrite",
            folder_key="probe.output_folder (or the folder it derives from)", batch_size_key="batch_size")

    # -- inputs
    def open_inputs(self):
        """Feature sources of both splits: the cache where the inputs never change, else the encoder each time."""
        return {split: (self.cached(split) if inputs.cacheable(self.spec, split) else
                        inputs.EncodedBatches(self.datasets[split], self.encoder, self.spec, self.engine, self.workers,
                                              self.task.autocast))
                for split in ("train", "val")}

    def cached(self, split: str) -> inputs.CachedBatches:
        spec, e, ds = self.spec, self.engine, self.datasets[split]
        described = {"split": split, "data": data_digest(spec.train_data if split == "train" else spec.val_data),
                     "inputs": _input_settings(spec, split), "device": e.device.type, "amp": e.amp_dtype}
        key = cache_key(tensors_digest(self.encoder), described)
        root = spec.probe.cache_folder or spec.folder / "feature_cache"
        cache = FeatureCache(root, split, key, len(ds), inputs.output_shape(spec, self.encoder, split), e.rank,
                             e.world_size)
        if cache.complete():
            log.info("feature cache (%s): reusing %s", split, cache.folder)
            cache.open()
            return inputs.CachedBatches(cache, e)
        todo = cache.prepare(e.barrier)
        source = inputs.EncodedBatches(ds, self.encoder, spec, e, self.workers, self.task.autocast)
        batches = source.batches(0, todo.tolist(), spec.batch_size)
        for i, (features, labels, idx) in enumerate(_progress(batches, e.rank, f"caching {split} features",
                                                              -(-len(todo) // spec.batch_size))):
            cache.write(idx, torch.stack(features, 1), labels, flush=i % 20 == 19)
        cache.seal(e.barrier)
        self._report_failures(split, source.failures)
        return inputs.CachedBatches(cache, e)

    def _report_failures(self, split: str, failures: list):
        if failures:
            log.warning("%s: %d sample(s) could not be decoded and were replaced by others (first: %s: %s)", split,
                        len(failures), failures[0][0], failures[0][1])
        self.failures[split] = self.failures.get(split, 0) + len(failures)

    # -- the loop
    def run(self) -> dict:
        if self.spec.val_only:
            return self.validate_only()
        spec, e = self.spec, self.engine
        self.checkpointer.prepare(resume=spec.resume)
        self.step = self.position.step = self.checkpointer.resume([self.position]) if spec.resume else 0
        self.sources = self.open_inputs()
        self.metrics = Metrics(spec.folder, "train_steps", Probe.columns, e.rank, spec.probe.tensorboard and
                               e.rank == 0, spec.probe.log_freq, spec.batch_size * e.world_size,
                               resume_step=self.step if spec.resume else None, device=e.device)
        self.log = EvalLog(spec.folder, f"{spec.csv_tag}_r{e.rank}.csv", spec.probe.tensorboard and e.rank == 0,
                           self.step // self.ipe if spec.resume else None)
        val = None
        while self.step < self.stop_step:
            epoch = self.step // self.ipe
            train = self.train_epoch(epoch)
            val, matrix = self.validate(epoch)
            self.log.epoch(epoch + 1, train, val, matrix)
            log.info("[epoch %d] train: %.3f%%  val: %.3f%% (head %d)", epoch + 1, train["top1"], val["top1"],
                     val["head"])
            self.checkpointer.save(self.step, train["loss"], [self.position])
        return self.finish(val if val is not None else self.validate(self.stop_step // self.ipe - 1)[0])

    def train_epoch(self, epoch: int) -> dict:
        spec, e = self.spec, self.engine
        start = self.step - epoch * self.ipe
        order_epoch = 0 if spec.probe.official_fixed_order else epoch
        order = inputs.train_order(len(self.datasets["train"]), e.rank, e.world_size, spec.probe.seed, order_epoch)
        order = order[start * spec.batch_size:self.ipe * spec.batch_size]
        scores = EpochScores.restore(self.position.scores, len(spec.heads), e.device) if start else \
            EpochScores(len(spec.heads), e.device)
        self.position.scores = scores
        for features, labels, _ in self.sources["train"].batches(epoch, order, spec.batch_size):
            scalars, host = self.task.train_step(self.step, [(features, labels)])
            scores.add_train(scalars.pop("correct"), labels.numel(), scalars["loss"])
            flushed = self.metrics.log(self.step, epoch, scalars, host)
            self.step = self.position.step = self.step + 1
            if flushed:
                self.task.after_flush(self.step, self.checkpointer.location)
                self.stop_if_preempted(scalars)
        self.metrics.flush()
        return scores.train_summary(e)

    @torch.no_grad()
    def validate(self, epoch: int) -> tuple[dict, torch.Tensor]:
        """Every rank predicts its share; the heads are scored on all of them (rank order, each sample once)."""
        spec, e = self.spec, self.engine
        order = inputs.val_order(len(self.datasets["val"]), e.rank, e.world_size)
        preds, labels, batch_sizes = [], [], []
        for features, y, _ in self.sources["val"].batches(epoch, order, spec.batch_size):
            preds.append(self.task.predict(features).argmax(-1).cpu())
            labels.append(y.cpu())
            batch_sizes.append(y.numel())
        gathered = e.gather_object((torch.cat(preds, 1) if preds else torch.zeros(len(spec.heads), 0, dtype=torch.long),
                                    torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long), batch_sizes))
        return selected(gathered, spec.num_classes)

    def validate_only(self) -> dict:
        """The official val_only mode: load the probe (probe.probe_checkpoint, else this run's latest) and report
        validation accuracy."""
        spec = self.spec
        path = spec.probe.probe_checkpoint or spec.folder / spec.latest_name
        grid = self.engine.modules[GRID]
        load_probe_checkpoint(list(grid.classifiers), read_checkpoint(path), str(path))
        spec.folder.mkdir(parents=True, exist_ok=True)
        self.sources = self.open_inputs()
        val, _ = self.validate(0)
        return self.finish(val, probe_file=str(path))

    def stop_if_preempted(self, scalars: dict):
        post_step(self.engine.rank, self.step)
        signum = self.preemption.agreed(self.engine)
        if not signum:
            return
        if self.checkpointer.last_saved != self.step:
            self.metrics.flush()
            self.checkpointer.save(self.step, float(scalars["loss"]), [self.position])
        log.warning("preempted at step %d: checkpoint in %s", self.step, self.checkpointer.location)
        requeued = requeue_job() if self.engine.rank == 0 and signum in REQUEUE_SIGNALS else None
        self.engine.barrier()
        self.close()
        raise Preempted(signum, self.step, self.checkpointer.location, requeued)

    def finish(self, val: dict, **extra) -> dict:
        spec = self.spec
        for split, source in self.sources.items():
            if not isinstance(source, inputs.CachedBatches):  # the cache's were counted when it was filled
                self._report_failures(split, source.failures)
        results = {"eval_name": spec.eval_name, "tag": spec.tag, "schema": spec.schema, "epochs": spec.epochs,
                   "steps": self.step, **val, "heads": [dataclasses.asdict(h) for h in spec.heads],
                   "selected_head_settings": dataclasses.asdict(spec.heads[val["head"]]),
                   "replaced_samples": self.failures, "folder": str(spec.folder), **extra}
        if len(results.get("per_class", [])) > 1000:  # a 10,000-class list would drown the file
            del results["per_class"]
        if self.engine.rank == 0:
            write_results(self.results_path, results)
        self.close()
        return dict(results, rank=self.engine.rank, results_json=str(self.results_path))

    def close(self):
        for part in (self.metrics, self.log):
            if part is not None:
                part.close()
        self.preemption.uninstall()
        if self.owns_engine:
            self.engine.close()


def inputs_workers(spec) -> int:
    from jepa_scale.data.sources import loader_workers

    requested = spec.probe.num_workers if spec.probe.num_workers is not None else spec.num_workers
    return loader_workers(requested, 1) if requested else 0


def _input_settings(spec, split: str) -> dict:
    """Everything of the spec that decides a split's encoder inputs (the feature cache's key)."""
    keys = ("modality", "resolution", "frames_per_clip", "frame_step", "clip_duration", "ceil_fps", "num_segments",
            "num_views", "attend_across_segments", "normalization")
    enc = spec.encoder_cfg
    # the front end (rate, FFT, hop...) changes the spectrograms, not the weights the key also hashes
    audio = dataclasses.asdict(spec.audio) if spec.reads_audio else None
    return {**{k: getattr(spec, k) for k in keys}, "split": split, "seed": spec.probe.seed,
            "train_augment": spec.probe.train_augment, "random_val_clips": spec.probe.official_val_clip_sampling,
            "model": dataclasses.asdict(enc.model), "data": dataclasses.asdict(enc.data), "inputs": spec.inputs,
            "audio": audio}


def _progress(items, rank: int, desc: str, total: int):
    if rank != 0:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, unit="batch")


def evaluate(cfg, **kwargs) -> dict:
    return ProbeRun(cfg, **kwargs).run()
