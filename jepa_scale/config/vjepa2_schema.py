"""The V-JEPA 2 pretraining and cooldown config root: V1's sections with the V2 keys (family.md 1.7).

The official V2 train files keep `app: vjepa`; `config.loader.recipe_of` tells them from V1 files by their V2 keys
(`data.dataset_fpcs`, `data.fps`, `model.use_rope`, the top-level `folder`). Defaults follow the V2 reader, not
V1's: no gradient clipping, RoPE on, `fps` sampling when neither `fps` nor `sampling_rate` is given, the cooldown
(`is_anneal`) selects the linear-decay LR.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from jepa_scale.config.schema import (DEAD_KEYS, DataConfig, MetaConfig, ModelConfig,
                                      OptimizationConfig, PretrainConfig)

_SLURM = DEAD_KEYS["nodes"]
V2_DEAD_KEYS = {
    **{k: v for k, v in DEAD_KEYS.items() if not k.startswith("optimization.")},
    "cpus_per_task": _SLURM,
    "mem_per_gpu": _SLURM,
    "meta.sync_gc": "Python's garbage collector pauses are not a concern of this loop (no per-step Python objects "
                    "accumulate)",
    "model.compile_model": "use distributed.compile (torch.compile per block, before sharding)",
}


@dataclass
class DataConfigV2(DataConfig):
    num_frames: Optional[int] = None  # V1 key; V2 builds the encoder for max(dataset_fpcs)
    sampling_rate: Optional[int] = None  # V1's frame step; V2 samples by `fps` unless this is set

    def __post_init__(self):
        if self.num_frames is None:
            self.num_frames = max(self.dataset_fpcs) if self.dataset_fpcs else 16
        if self.fps is None and self.sampling_rate is None and self.clip_duration is None:
            self.fps = 4.0  # the V2 configs' value, and the reader's default way to sample


@dataclass
class MetaConfigV2(MetaConfig):
    seed: int = 239
    skip_batches: int = -1  # V2: skip this many batches at start (-1: none)
    sync_gc: bool = False


@dataclass
class ModelConfigV2(ModelConfig):
    use_rope: bool = True
    num_mask_tokens: Optional[int] = None  # ours: default len(mask) x len(fpc groups); released files have 6 or 10
    compile_model: bool = False


@dataclass
class OptimizationConfigV2(OptimizationConfig):
    clip_grad: Optional[float] = None  # V2 does not clip
    final_weight_decay: float = 0.04
    ema: list[float] = field(default_factory=lambda: [0.99925, 0.99925])
    lr_schedule: Optional[str] = None  # ours; null: linear decay when is_anneal, else warmup-cosine
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8

    def __post_init__(self):
        if self.lr_schedule is None:
            self.lr_schedule = "linear" if self.is_anneal else "cosine"


@dataclass
class VJEPA2Config(PretrainConfig):
    recipe: ClassVar[str] = "vjepa2"
    dead_keys: ClassVar[dict] = V2_DEAD_KEYS
    folder: Optional[str] = None  # V2: the run's folder (same as logging.folder; set one of them)
    cpus_per_task: int = 0  # V2 launcher key: CPUs per rank (0: from data.num_workers)
    mem_per_gpu: Optional[str] = None  # V2 launcher key
    data: DataConfigV2 = field(default_factory=DataConfigV2)
    meta: MetaConfigV2 = field(default_factory=MetaConfigV2)
    model: ModelConfigV2 = field(default_factory=ModelConfigV2)
    optimization: OptimizationConfigV2 = field(default_factory=OptimizationConfigV2)

    def __post_init__(self):
        if self.folder is not None and self.logging.folder == "runs/default":
            self.logging.folder = self.folder  # the V2 files have no logging section

    @property
    def folder_key(self) -> str:
        return "logging.folder" if self.folder is None else "folder"

    @property
    def resumes(self) -> bool:
        """Whether the run continues from its own folder; a cooldown with resume_anneal false always restarts from
        optimization.anneal_ckpt."""
        o = self.optimization
        return self.meta.load_checkpoint and (o.resume_anneal or not o.is_anneal)

    @property
    def start_checkpoint(self) -> Optional[str]:
        """The checkpoint a fresh run starts from: the cooldown's pretraining checkpoint."""
        return self.optimization.anneal_ckpt if self.optimization.is_anneal else None

    def _model_and_schedule_problems(self, need):
        super()._model_and_schedule_problems(need)
        o, d, m = self.optimization, self.data, self.model
        need(not o.is_anneal or bool(o.anneal_ckpt), "optimization.anneal_ckpt",
             "is null, but optimization.is_anneal is true: the cooldown starts from a pretraining checkpoint (a "
             "checkpoint file, e.g. a run's jepa-latest.pth.tar or jepa-e{epoch}.pth.tar, or an official .pt)")
        need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optimization.betas",
             f"must be [beta1, beta2] in [0, 1), got {o.betas}")
        if d.dataset_fpcs is not None:
            need(len(d.dataset_fpcs) > 0 and all(f > 0 for f in d.dataset_fpcs), "data.dataset_fpcs",
                 f"must be positive frame counts, got {d.dataset_fpcs}")
            need(not d.dataset_fpcs or d.num_frames == max(d.dataset_fpcs), "data.num_frames",
                 f"is {d.num_frames}, but the encoder is built for max(data.dataset_fpcs) = "
                 f"{max(d.dataset_fpcs or [0])}: remove data.num_frames")
            n_sets = len(d.shards) or len(d.datasets)
            need(not n_sets or len(d.dataset_fpcs) == n_sets, "data.dataset_fpcs",
                 f"has {len(d.dataset_fpcs)} values for {n_sets} datasets (one frames-per-clip value each)")
            need(all(f % d.tubelet_size == 0 for f in d.dataset_fpcs if d.tubelet_size > 0), "data.dataset_fpcs",
                 f"every value must be divisible by data.tubelet_size={d.tubelet_size}, got {d.dataset_fpcs}")
        ways = [k for k, v in (("fps", d.fps), ("sampling_rate", d.sampling_rate), ("clip_duration", d.clip_duration))
                if v is not None]
        need(len(ways) == 1, "data.fps", f"exactly one of data.fps, data.sampling_rate, data.clip_duration must be "
                                         f"set (as the V2 reader requires), got {', '.join(ways) or 'none'}")
        need(d.fps is None or d.fps > 0, "data.fps", f"must be positive, got {d.fps}")
        need(m.num_mask_tokens is None or m.num_mask_tokens >= self.num_mask_token_uses(), "model.num_mask_tokens",
             f"is {m.num_mask_tokens}, but the predictor uses {self.num_mask_token_uses()} (one per frames-per-clip "
             f"group)")

    def num_mask_token_uses(self) -> int:
        return len(self.data.fpc_groups())

    def _recipe_problems(self, need):  # replaces V1's refusal of the V2 keys
        for i, mc in enumerate(self.mask):
            need(not (mc.full_complement and mc.pred_full_complement), f"mask[{i}].pred_full_complement",
                 "and full_complement are both true: each makes one token set the other's complement; set one")
        need(self.model.use_rope, "model.use_rope", "must be true for V-JEPA 2 (every V2 config uses RoPE; a "
                                                    "position-table encoder is V-JEPA 1: use its keys)")
        need(self.folder is None or self.logging.folder == self.folder, "folder",
             f"is {self.folder!r} but logging.folder is {self.logging.folder!r}: set one of them")
        need(self.meta.skip_batches <= 0, "meta.skip_batches",
             "is not implemented (a resume restarts at the exact data position instead)")
        need(not self.model.compile_model, "model.compile_model", "use distributed.compile: true instead")
