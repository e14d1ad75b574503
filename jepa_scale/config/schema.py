"""The typed config tree. Field names are the official V-JEPA YAML keys; our additions are marked.

Each dataclass is one YAML section. Every official key either acts, is refused by `problems()` when set to what
we do not implement, or is listed in `DEAD_KEYS` with why it changes nothing; `ignored_keys()` finds the dead ones
a file sets, so the CLI and the trainer can say so. `problems()` on the root checks the cross-field rules that a
single type cannot express.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar, Optional

_SLURM = ("the job layout, read by launch/slurm.py and launch/submit.py; a run itself uses the processes its "
          "launcher started")
_NO_COOLDOWN = "a V-JEPA 2 cooldown key; a V-JEPA 1 config accepts only its default"

# Official keys that parse but change nothing here, and the reason shown by `python -m jepa_scale.config`.
# Keys inside list sections are written without an index (`mask.key` stands for every `mask[i].key`).
DEAD_KEYS = {
    "nodes": _SLURM,
    "tasks_per_node": _SLURM,
    "meta.eval_freq": "the official loop never reads it",
    "data.decode_one_clip": "the official loader always decodes one clip per sample (num_clips sets how many)",
    "data.persistent_workers": "our loader keeps its workers for the whole run",
    "data.pin_mem": "pinned memory is used whenever a CUDA device trains",
    "optimization.is_anneal": f"{_NO_COOLDOWN} (false)",
    "optimization.anneal_ckpt": f"{_NO_COOLDOWN} (null)",
    "optimization.resume_anneal": f"{_NO_COOLDOWN} (false)",
}


def dead_keys_of(raw) -> dict:
    """The dead-key table of the kind of config `raw` is (a recipe's root, or an eval schema)."""
    from jepa_scale.config.eval_schema import eval_dead_keys, is_eval_config
    from jepa_scale.config.loader import recipe_of
    from jepa_scale.recipes import RECIPES

    if is_eval_config(raw):
        return eval_dead_keys(raw)
    recipe = recipe_of(raw)
    return RECIPES.get(recipe).config_class.dead_keys if recipe in RECIPES else DEAD_KEYS


def dead_key_reason(path: str, table: dict | None = None) -> Optional[str]:
    """Why the key at `path` (`a.b`, `mask[1].c` or `mask.1.c`) changes nothing; None when it acts."""
    return (DEAD_KEYS if table is None else table).get(re.sub(r"\[\d+\]|\.\d+(?=\.|$)", "", path))


def _key_paths(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            yield path
            yield from _key_paths(v, path)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _key_paths(v, f"{prefix}[{i}]")


def ignored_keys(raw: dict) -> list[tuple[str, str]]:
    """(key path, reason) for each DEAD_KEYS key that the raw YAML dict sets, in file order; list items are
    named by index (`mask[1].key`). A key set to its default is still reported: the file asked for it."""
    table = dead_keys_of(raw or {})
    return [(p, why) for p in _key_paths(raw or {}) if (why := dead_key_reason(p, table)) is not None]


def dali_unsupported(data_cfg) -> list[tuple[str, str]]:
    """(key path, reason) for each data option the DALI video path would not apply, as set in `data_cfg`.

    The DALI reader samples one clip per video by data.sampling_rate, from a shuffled pass over the shards; these
    options need the PyAV path. Empty for the defaults."""
    d, out = data_cfg, []
    if d.num_clips > 1:
        out.append(("data.num_clips", f"is {d.num_clips}; the DALI path decodes one clip per video"))
    if d.clip_duration is not None:
        out.append(("data.clip_duration", f"is {d.clip_duration}; the DALI path steps frames by data.sampling_rate "
                                          "only"))
    if d.filter_short_videos:
        out.append(("data.filter_short_videos", "is true; the DALI path keeps short videos (their clips repeat the "
                                                "last frame)"))
    if d.sampling == "resampled":
        out.append(("data.sampling", "is resampled; the DALI path reads each shard sample once per epoch, "
                                     "shuffled"))
    if d.fps is not None:
        out.append(("data.fps", f"is {d.fps}; the DALI path steps frames by data.sampling_rate only"))
    if len(groups := d.fpc_groups()) > 1:
        out.append(("data.dataset_fpcs", f"has {len(groups)} frames-per-clip values {groups}; the DALI path decodes "
                                         "one clip length (data.num_frames) for all videos"))
    return out


@dataclass
class DataConfig:
    datasets: list[str] = field(default_factory=list)
    batch_size: int = 24  # per device, as in the official configs
    dataset_type: str = "VideoDataset"
    datasets_weights: Optional[list[float]] = None
    decode_one_clip: bool = True
    num_clips: int = 1
    num_frames: int = 16
    tubelet_size: int = 2
    sampling_rate: int = 4
    crop_size: int = 224
    patch_size: int = 16
    pin_mem: bool = True
    num_workers: int = 12
    persistent_workers: bool = True
    filter_short_videos: bool = False
    clip_duration: Optional[float] = None
    # ours: webdataset shard folders from data_tools/make_shards.py (instead of `datasets` CSV lists)
    shards: list[str] = field(default_factory=list)
    sampling: str = "epoch"  # ours: epoch (each sample once per epoch) | resampled (i.i.d. draws by weight)
    decoder: str = "auto"  # ours: auto (dali with shards on a GPU when installed, else pyav) | dali | pyav
    dali_pipelines: int = 2  # ours: DALI decode pipelines per GPU (one NVDEC engine each; an H100 has 7)
    # ours: the stream gives up after this many videos in a row gave no clip (or a whole pass over the list did)
    max_consecutive_failures: int = 500
    # V2 keys (a file that sets them is read by the V2 root, config/vjepa2_schema.py)
    dataset_fpcs: Optional[list[int]] = None  # frames per clip of each dataset
    fps: Optional[float] = None  # sample frames at this rate instead of every `sampling_rate` frames

    def frames_per_dataset(self, num_datasets: int) -> list[int]:
        """Frames per clip of each dataset: `dataset_fpcs` (V2), else `num_frames` for all."""
        return list(self.dataset_fpcs) if self.dataset_fpcs else [self.num_frames] * num_datasets

    def fpc_groups(self) -> list[int]:
        """The distinct frames-per-clip values in `dataset_fpcs` order: group i uses V2 predictor mask token i."""
        return list(dict.fromkeys(self.dataset_fpcs or [self.num_frames]))

    def frame_step(self, video_fps: float, frames: int) -> int:
        """Source frames between sampled frames for a clip of `frames` frames: from `fps` (V2: the official
        ceil(video fps) // fps, at least 1), from `clip_duration` (a fixed duration in seconds), else
        `sampling_rate`."""
        if self.fps is not None:
            return max(1, math.ceil(video_fps) // int(self.fps)) if video_fps > 0 else 1
        if self.clip_duration is not None:
            return max(1, int(self.clip_duration * video_fps / frames))
        return self.sampling_rate


@dataclass
class DataAugConfig:
    auto_augment: bool = False
    motion_shift: bool = False
    random_resize_aspect_ratio: list[float] = field(default_factory=lambda: [0.75, 1.35])
    random_resize_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    reprob: float = 0.0
    horizontal_flip: bool = True  # ours: the official loader always flips


@dataclass
class LoggingConfig:
    folder: str = "runs/default"
    write_tag: str = "jepa"
    log_freq: int = 10  # ours: steps between host syncs for logging
    checkpoint_freq: int = 0  # ours: steps between checkpoints (0: once per epoch, as the official code)
    tensorboard: bool = True  # ours
    keep_latest: int = 2  # ours: complete checkpoints kept (older ones are removed; save_every_freq copies stay)
    overwrite: bool = False  # ours: a fresh run may replace another run's checkpoints and logs in its folder


@dataclass
class LossConfig:
    loss_exp: float = 1.0
    reg_coeff: float = 0.0


@dataclass
class MaskConfig:
    aspect_ratio: list[float] = field(default_factory=lambda: [0.75, 1.5])
    num_blocks: int = 1
    spatial_scale: list[float] = field(default_factory=lambda: [0.15, 0.15])
    temporal_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    max_temporal_keep: float = 1.0
    max_keep: Optional[int] = None
    # V2 keys (V-JEPA 1 configs keep them false)
    full_complement: bool = False  # the targets are the complement of the (cut) context
    pred_full_complement: bool = False  # the context is the complement of the targets
    inv_block: bool = False  # the blocks are the context, their complement the targets


@dataclass
class MetaConfig:
    load_checkpoint: bool = False
    read_checkpoint: Optional[str] = None
    seed: int = 234
    eval_freq: int = 100
    use_sdpa: bool = True
    dtype: str = "bfloat16"
    save_every_freq: int = -1  # V2 key: also keep `{write_tag}-e{epoch}.pth.tar` every N epochs (-1: never)


@dataclass
class ModelConfig:
    model_name: str = "vit_large"
    pred_depth: int = 12
    pred_embed_dim: int = 384
    uniform_power: bool = True
    use_mask_tokens: bool = True
    zero_init_mask_tokens: bool = True
    use_activation_checkpointing: bool = False  # V2 key: recompute every encoder and predictor block in backward
    use_rope: bool = False
    rope_variant: str = "official"  # ours: official | corrected (RoPE frequencies; official loads released weights)
    # ours: explicit overrides of the preset (null keeps the preset's value)
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: Optional[float] = None
    pred_num_heads: Optional[int] = None  # V2 key; default: the encoder's heads (V1)
    # ours: transformer (V1's) | mamba (the Video-Mamba-JEPA fork's bidirectional Mamba predictor; V1 recipe only)
    pred_type: str = "transformer"
    use_silu: bool = False  # V2 key: SwiGLU encoder MLP
    use_pred_silu: bool = False  # V2 key: SwiGLU predictor MLP
    wide_silu: bool = True  # V2 key: SwiGLU hidden width 2/3 of the GELU MLP's, rounded up to a multiple of 8
    attention: str = "sdpa"  # ours: sdpa | math | xformers (use_sdpa: false means math)
    # ours, VideoMamba backbones: videomamba (upstream's order, which zeroes the dt bias) | mamba (Mamba's dt init)
    mamba_dt_init: str = "videomamba"
    mamba_divide_out: bool = False  # ours: halve the sum of the two scan directions
    drop_path: float = 0.0  # ours: stochastic depth, VideoMamba backbones only


@dataclass
class OptimizationConfig:
    ipe: int = 300
    ipe_scale: float = 1.25
    clip_grad: Optional[float] = 10.0
    weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    epochs: int = 300
    warmup: float = 40
    start_lr: float = 0.0002
    lr: float = 0.000625
    final_lr: float = 1.0e-6
    ema: list[float] = field(default_factory=lambda: [0.998, 1.0])
    # ours: cosine (V1), constant (V2 pretrain: warmup then constant), linear (V2 cooldown: lr -> final_lr)
    lr_schedule: str = "cosine"
    max_steps: Optional[int] = None  # ours: stop after this many steps without changing the schedules
    max_nonfinite_steps: int = 10  # ours: stop after this many consecutive steps skipped for a NaN/inf loss or grad
    # V2 cooldown keys: only their defaults are accepted (see problems())
    is_anneal: bool = False
    anneal_ckpt: Optional[str] = None
    resume_anneal: bool = False


@dataclass
class DistributedConfig:  # ours
    engine: str = "auto"  # auto (single; deepspeed under its launcher; else ddp) | single | ddp | fsdp | deepspeed
    zero_stage: int = 2  # deepspeed: ZeRO stage 0-3
    offload_optimizer: bool = False  # deepspeed: optimizer state in CPU memory
    reshard_after_forward: bool = True  # fsdp: free gathered blocks after forward (ZeRO-3-like); false: ZeRO-2-like
    hsdp_replicas: int = 1  # fsdp: >1 makes a 2-D mesh, replicas x shards (HSDP: shard within a node, replicate across)
    # none | full | every_k (checkpoint_every: k); model.use_activation_checkpointing: true (V2 key) means full
    activation_checkpointing: str = "none"
    checkpoint_every: int = 2
    compile: bool = False  # torch.compile each encoder and predictor block (before sharding)
    compile_backend: str = "inductor"
    # the faster single-process CPU step (jepa_scale/distributed/fast_step.py): every block torch.compiled with
    # compile_backend (forward and backward), patch embedding as one GEMM instead of oneDNN's strided convolution.
    # Same losses to float rounding (bench/step_time.py --vs-eager, tests/test_fast_step.py); off by default
    # because the first steps pay the compile (about a minute per model kind on 2 cores, less with a warm cache)
    cpu_fast_step: bool = False
    micro_batch_size: Optional[int] = None  # per-device micro-batch; data.batch_size / it micro-batches accumulate
    # a collective that waits longer (a rank died or hangs) ends the job instead of PyTorch's 30-minute wait
    collective_timeout_s: int = 600
    check_memory: bool = True  # refuse to start when the planner predicts more memory than the device has


@dataclass
class PretrainConfig:
    recipe: ClassVar[str] = "vjepa"  # the RECIPES entry that trains this root (what `app` means, see recipe_of)
    dead_keys: ClassVar[dict] = DEAD_KEYS
    app: str = "vjepa"
    nodes: int = 1
    tasks_per_node: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    data_aug: DataAugConfig = field(default_factory=DataAugConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mask: list[MaskConfig] = field(default_factory=lambda: [MaskConfig()])
    meta: MetaConfig = field(default_factory=MetaConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    @property
    def resumes(self) -> bool:
        """Whether the run continues from the checkpoints in its folder."""
        return self.meta.load_checkpoint

    start_checkpoint = None  # the checkpoint a fresh run starts from (V1: none)
    folder_key = "logging.folder"  # the key that sets the run folder (named by errors about it)

    def problems(self) -> list[tuple[str, str]]:
        """(key path, message) for every rule the values break; empty when the config is usable."""
        out = []

        def need(ok: bool, key: str, msg: str):
            if not ok:
                out.append((key, msg))

        for check in (self._data_problems, self._augment_and_mask_problems, self._model_and_schedule_problems,
                      self._recipe_problems, self._run_problems):
            check(need)
        return out

    def _data_problems(self, need):
        d = self.data
        need(d.batch_size > 0, "data.batch_size", f"must be positive, got {d.batch_size}")
        need(d.patch_size > 0, "data.patch_size", f"must be positive, got {d.patch_size}")
        need(d.tubelet_size > 0, "data.tubelet_size", f"must be positive, got {d.tubelet_size}")
        if d.patch_size > 0:
            need(d.crop_size % d.patch_size == 0, "data.crop_size",
                 f"{d.crop_size} is not divisible by data.patch_size={d.patch_size}")
        if d.tubelet_size > 0 and d.num_frames > 1:
            need(d.num_frames % d.tubelet_size == 0, "data.num_frames",
                 f"{d.num_frames} is not divisible by data.tubelet_size={d.tubelet_size}")
        need(d.num_frames > 0, "data.num_frames", f"must be positive, got {d.num_frames}")
        need(d.sampling_rate is None or d.sampling_rate > 0, "data.sampling_rate", f"must be positive, got {d.sampling_rate}")
        need(d.num_clips > 0, "data.num_clips", f"must be positive, got {d.num_clips}")
        need(d.num_workers >= 0, "data.num_workers", f"must be >= 0, got {d.num_workers}")
        need(d.dali_pipelines > 0, "data.dali_pipelines", f"must be positive, got {d.dali_pipelines}")
        need(d.max_consecutive_failures > 0, "data.max_consecutive_failures",
             f"must be positive, got {d.max_consecutive_failures}")
        need(d.decoder in ("auto", "pyav", "dali"), "data.decoder", f"must be auto, pyav or dali, got {d.decoder!r}")
        need(d.dataset_type == "VideoDataset", "data.dataset_type",
             f"only VideoDataset is supported for video pretraining, got {d.dataset_type!r}")
        need(not (d.shards and d.datasets), "data.shards",
             "give CSV lists (data.datasets) or shard folders (data.shards), not both: set the other to []")
        need(d.sampling in ("epoch", "resampled"), "data.sampling", f"must be epoch or resampled, got {d.sampling!r}")
        if d.decoder == "dali":  # with auto, the data layer falls back to PyAV for these instead
            for key, why in dali_unsupported(d):
                need(False, key, f"{why}, so data.decoder: dali would ignore it; use data.decoder: pyav")
        if d.datasets_weights is not None:
            need(all(w >= 0 for w in d.datasets_weights) and sum(d.datasets_weights) > 0, "data.datasets_weights",
                 "must be >= 0 and not all 0")
            if not d.shards:
                need(len(d.datasets_weights) == len(d.datasets), "data.datasets_weights",
                     f"has {len(d.datasets_weights)} weights for {len(d.datasets)} CSV lists")

    def _augment_and_mask_problems(self, need):
        a = self.data_aug
        need(not a.auto_augment, "data_aug.auto_augment", "is not implemented (the official pretraining configs keep it false)")
        need(not a.motion_shift, "data_aug.motion_shift", "is not implemented (the official pretraining configs keep it false)")
        need(a.reprob == 0.0, "data_aug.reprob", "random erasing is not implemented (the official configs use 0.0)")
        for key, pair in (("data_aug.random_resize_aspect_ratio", a.random_resize_aspect_ratio),
                          ("data_aug.random_resize_scale", a.random_resize_scale)):
            need(len(pair) == 2 and 0 < pair[0] <= pair[1], key, f"must be [low, high] with 0 < low <= high, got {pair}")
        need(len(self.mask) > 0, "mask", "needs at least one mask configuration")
        for i, mc in enumerate(self.mask):
            for name in ("aspect_ratio", "spatial_scale", "temporal_scale"):
                pair = getattr(mc, name)
                need(len(pair) == 2 and 0 <= pair[0] <= pair[1], f"mask[{i}].{name}",
                     f"must be [low, high] with 0 <= low <= high, got {pair}")
            need(mc.num_blocks > 0, f"mask[{i}].num_blocks", f"must be positive, got {mc.num_blocks}")
            need(0 < mc.max_temporal_keep <= 1, f"mask[{i}].max_temporal_keep", "must be in (0, 1]")

    def _model_and_schedule_problems(self, need):
        m, o = self.model, self.optimization
        need(self.meta.dtype in ("bfloat16", "float32", "float16"), "meta.dtype",
             f"must be bfloat16, float16 or float32, got {self.meta.dtype!r}")
        from jepa_scale.models import BACKBONES
        from jepa_scale.models.rope import VARIANTS

        need(m.model_name in BACKBONES, "model.model_name", BACKBONES.unknown(m.model_name))
        need(m.use_mask_tokens, "model.use_mask_tokens", "must be true: V-JEPA predicts from learned mask tokens")
        need(m.rope_variant in VARIANTS, "model.rope_variant",
             f"must be one of {', '.join(VARIANTS)}, got {m.rope_variant!r}")
        need(m.attention in ("sdpa", "math", "xformers"), "model.attention",
             f"must be sdpa, math or xformers, got {m.attention!r}")
        need(0 <= m.drop_path < 1, "model.drop_path", f"must be in [0, 1), got {m.drop_path}")
        self._mamba_problems(need)
        need(o.lr_schedule in ("cosine", "constant", "linear"), "optimization.lr_schedule",
             f"must be cosine, constant or linear, got {o.lr_schedule!r}")
        need(len(o.ema) == 2 and 0 <= o.ema[0] <= o.ema[1] <= 1, "optimization.ema",
             f"must be [start, end] with 0 <= start <= end <= 1, got {o.ema}")
        need(o.ipe > 0, "optimization.ipe", f"must be positive, got {o.ipe}")
        need(o.epochs > 0, "optimization.epochs", f"must be positive, got {o.epochs}")
        need(o.max_steps is None or o.max_steps > 0, "optimization.max_steps", "must be positive or null")
        need(o.max_nonfinite_steps > 0, "optimization.max_nonfinite_steps", "must be positive")

    def _mamba_problems(self, need):
        """The VideoMamba options (encoder and predictor) and the predictor kind."""
        from jepa_scale.models.videomamba import MAMBA_DT_INITS, MAMBA_PRESETS

        m = self.model
        need(m.mamba_dt_init in MAMBA_DT_INITS, "model.mamba_dt_init",
             f"must be {' or '.join(MAMBA_DT_INITS)}, got {m.mamba_dt_init!r}")
        need(m.pred_type in ("transformer", "mamba"), "model.pred_type",
             f"must be transformer or mamba, got {m.pred_type!r}")
        mamba, mamba_pred = m.model_name in MAMBA_PRESETS, m.pred_type == "mamba"
        for key, default in (("drop_path", 0.0), ("mamba_dt_init", "videomamba"), ("mamba_divide_out", False)):
            need(mamba or mamba_pred or getattr(m, key) == default, f"model.{key}",
                 f"applies to VideoMamba backbones only (and the Mamba predictor, model.pred_type: mamba), not "
                 f"{m.model_name!r} with a transformer predictor")
        # the subclass roots (V-JEPA 2, AV-JEPA) build predictors of their own, which would ignore the key; RoPE
        # makes a file V-JEPA 2's (config.loader.recipe_of), so this also refuses the Mamba predictor with RoPE
        need(not mamba_pred or self.recipe == PretrainConfig.recipe, "model.pred_type",
             f"mamba is a V-JEPA 1 option (app: vjepa; its fixed sin-cos table, no RoPE): the {self.recipe} recipe "
             f"builds its own predictor")
        need(not (mamba_pred and m.pred_num_heads is not None), "model.pred_num_heads",
             "the Mamba predictor (model.pred_type: mamba) has no heads: remove it")
        need(not (mamba and m.use_rope), "model.use_rope", "VideoMamba uses its fixed sin-cos table, not RoPE")
        # the chunked scan's Python loops would be unrolled into one huge graph per length: not compiled yet
        need(not (self.distributed.cpu_fast_step and (mamba or mamba_pred)), "distributed.cpu_fast_step",
             "does not apply to VideoMamba backbones or the Mamba predictor yet (their selective scan is not "
             "compiled): set it false")

    def _recipe_problems(self, need):
        """The V2 keys V1 does not run (the V2 root, config/vjepa2_schema.py, implements them)."""
        for i, mc in enumerate(self.mask):
            for name in ("full_complement", "pred_full_complement", "inv_block"):
                need(not getattr(mc, name), f"mask[{i}].{name}",
                     "is a V-JEPA 2 mask option: V-JEPA 1 configs keep it false")
        need(not self.model.use_rope, "model.use_rope", "is V-JEPA 2's: the V-JEPA 1 recipe's sin-cos predictor with a "
                                                        "RoPE encoder is faithful to neither (app: vjepa2)")
        for name in ("use_silu", "use_pred_silu"):
            need(not getattr(self.model, name), f"model.{name}", "is a V-JEPA 2 option: V-JEPA 1 has GELU MLPs")
        o = self.optimization
        # run as a pretraining, a cooldown config would silently train from scratch
        cooldown = "is a V-JEPA 2 cooldown key, and this is a V-JEPA 1 config (a V2 file has data.dataset_fpcs)"
        need(not o.is_anneal, "optimization.is_anneal", cooldown)
        need(o.anneal_ckpt is None, "optimization.anneal_ckpt", cooldown)
        need(not o.resume_anneal, "optimization.resume_anneal", cooldown)

    def _run_problems(self, need):
        need(self.loss.loss_exp > 0, "loss.loss_exp", f"must be positive, got {self.loss.loss_exp}")
        run_problems(need, self.logging, self.distributed, self.data.batch_size)


def run_problems(need, logging, distributed, batch_size: int):
    """The rules of our `logging:` and `distributed:` sections, shared by every pretraining root."""
    need(logging.log_freq > 0, "logging.log_freq", f"must be positive, got {logging.log_freq}")
    need(logging.keep_latest > 0, "logging.keep_latest", f"must be positive, got {logging.keep_latest}")
    dc = distributed
    need(dc.engine in ("auto", "single", "ddp", "fsdp", "deepspeed"), "distributed.engine",
         f"must be auto, single, ddp, fsdp or deepspeed, got {dc.engine!r}")
    need(dc.zero_stage in (0, 1, 2, 3), "distributed.zero_stage", f"must be 0, 1, 2 or 3, got {dc.zero_stage}")
    need(dc.hsdp_replicas > 0, "distributed.hsdp_replicas", "must be positive")
    need(dc.activation_checkpointing in ("none", "full", "every_k"), "distributed.activation_checkpointing",
         f"must be none, full or every_k, got {dc.activation_checkpointing!r}")
    need(dc.checkpoint_every > 0, "distributed.checkpoint_every", "must be positive")
    need(dc.collective_timeout_s > 0, "distributed.collective_timeout_s", "must be positive")
    # the compiled units are not wrapped for DDP/FSDP/ZeRO here, and distributed.compile is the option for them
    need(not dc.cpu_fast_step or dc.engine in ("auto", "single"), "distributed.cpu_fast_step",
         f"is for the single-process engine only (distributed.engine: single or auto), got {dc.engine!r}; use "
         f"distributed.compile for ddp, fsdp and deepspeed")
    need(not (dc.cpu_fast_step and dc.compile), "distributed.compile",
         "cpu_fast_step compiles the blocks itself: set one of distributed.compile and distributed.cpu_fast_step")
    if dc.micro_batch_size is not None:
        need(dc.micro_batch_size > 0 and batch_size % dc.micro_batch_size == 0, "distributed.micro_batch_size",
             f"must divide data.batch_size={batch_size}, got {dc.micro_batch_size}")
