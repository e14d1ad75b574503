"""The I-JEPA pretraining config root: the official sections and keys (family.md 2.4), our additions marked `# ours`.

The official files have no `app` key; `config.loader.recipe_of` tells them by `meta.model_name`. The official
reader takes every key with `args[...]`, so `missing_keys` names each one a file leaves out. The runtime (trainer,
engines, checkpointer, metrics, planner) reads V-JEPA attribute names; the few that I-JEPA spells differently are
properties or class constants here: `meta.dtype` (from `use_bfloat16`), `data.num_frames` (1), `optimization.lr_schedule` ("cosine"), and a read-only
`model` view (`model_name`, the overrides, `attention`, ...). `optimization.ipe` null is the official
ipe = len(loader): the images found // the global batch, counted when first asked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from jepa_scale.config.schema import DistributedConfig, run_problems

DEAD_KEYS = {
    "meta.copy_data": "the official loader's copy of the ImageNet tar to the SLURM node's /scratch; we read the images "
                      "where data.root_path / data.shards point",
    "data.pin_mem": "pinned memory is used whenever a CUDA device trains",
    "data.color_jitter_strength": "read only with data.use_color_distortion: true, which is not implemented",
}

# every key the official reader (src/train.py) takes with args[...]: a file that lacks one fails there
OFFICIAL_KEYS = {
    "data": ("batch_size", "color_jitter_strength", "crop_scale", "crop_size", "image_folder", "num_workers",
             "pin_mem", "root_path", "use_color_distortion", "use_gaussian_blur", "use_horizontal_flip"),
    "logging": ("folder", "write_tag"),
    "mask": ("allow_overlap", "aspect_ratio", "enc_mask_scale", "min_keep", "num_enc_masks", "num_pred_masks",
             "patch_size", "pred_mask_scale"),
    "meta": ("copy_data", "load_checkpoint", "model_name", "pred_depth", "pred_emb_dim", "read_checkpoint",
             "use_bfloat16"),
    "optimization": ("ema", "epochs", "final_lr", "final_weight_decay", "ipe_scale", "lr", "start_lr", "warmup",
                     "weight_decay"),
}
TRAIN_SPLIT = "train/"  # the official ImageNet dataset reads os.path.join(root_path, image_folder, "train/")


@dataclass
class IJEPADataConfig:
    batch_size: int = 128  # per device
    color_jitter_strength: float = 0.0
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])
    crop_size: int = 224
    image_folder: str = "imagenet_full_size/061417/"
    num_workers: int = 10
    pin_mem: bool = True
    root_path: str = "$replace_this_with_absolute_path_to_your_datasets_directory"
    use_color_distortion: bool = False
    use_gaussian_blur: bool = False
    use_horizontal_flip: bool = False
    # ours: image shard folders from data_tools/make_shards.py --images (then root_path/image_folder are not read)
    shards: list[str] = field(default_factory=list)
    # ours: the stream gives up after this many images in a row could not be decoded (or a whole pass did)
    max_consecutive_failures: int = 500

    @property
    def train_folder(self) -> str:
        """The ImageFolder split the official loader reads."""
        return os.path.join(self.root_path, self.image_folder, TRAIN_SPLIT)

    num_frames: ClassVar[int] = 1  # an image (the planner and the shared messages say frames x crop)


@dataclass
class IJEPALoggingConfig:
    folder: str = "runs/default"
    write_tag: str = "jepa"
    log_freq: int = 10  # ours: steps between host syncs for logging (the official logs every 10)
    checkpoint_freq: int = 0  # ours: steps between checkpoints (0: once per epoch, as the official code)
    tensorboard: bool = True  # ours
    keep_latest: int = 2  # ours: complete checkpoints kept
    overwrite: bool = False  # ours: a fresh run may replace another run's checkpoints and logs in its folder


@dataclass
class IJEPAMaskConfig:
    allow_overlap: bool = False
    aspect_ratio: list[float] = field(default_factory=lambda: [0.75, 1.5])
    enc_mask_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    min_keep: int = 10
    num_enc_masks: int = 1
    num_pred_masks: int = 4
    patch_size: int = 14
    pred_mask_scale: list[float] = field(default_factory=lambda: [0.15, 0.2])


@dataclass
class IJEPAMetaConfig:
    copy_data: bool = False
    load_checkpoint: bool = False
    model_name: str = "vit_huge"
    pred_depth: int = 12
    pred_emb_dim: int = 384
    read_checkpoint: Optional[str] = None
    use_bfloat16: bool = True
    seed: int = 0  # ours: the official seeds everything with a fixed global seed 0
    # ours: explicit overrides of the model_name preset (null keeps the preset's value)
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    attention: str = "sdpa"  # ours: sdpa | math (the official formula) | xformers
    pred_type: str = "transformer"  # ours, refused unless transformer: V-JEPA 1's `model.pred_type: mamba` is not here
    # ours: also keep `{write_tag}-e{epoch}.pth.tar` every N epochs (-1: never). The official keeps one every 50
    # epochs, named one epoch late (its "ep50" holds 49 epochs); ours is named by the epochs it holds.
    save_every_freq: int = 50

    @property
    def dtype(self) -> str:
        """What the engines read: bf16 autocast on CUDA for use_bfloat16 (without the official GradScaler, which
        bf16 does not need), float32 otherwise."""
        return "bfloat16" if self.use_bfloat16 else "float32"

    use_sdpa: ClassVar[bool] = True  # the V-JEPA key the attention switch reads; I-JEPA chooses by meta.attention


class _Ipe:
    """`optimization.ipe`: a field whose null means the official ipe = len(loader), resolved (once) by the config
    root when first read; the resolved value is what config.yaml records."""

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return None  # the dataclass default
        value = obj.__dict__.get(self.slot)
        if value is None and obj.__dict__.get("_resolve_ipe") is not None:
            value = obj.__dict__[self.slot] = obj._resolve_ipe()
        return value

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = value


@dataclass
class IJEPAOptimizationConfig:
    ema: list[float] = field(default_factory=lambda: [0.996, 1.0])
    epochs: int = 300
    final_lr: float = 1.0e-6
    final_weight_decay: float = 0.4
    ipe_scale: float = 1.0
    lr: float = 0.001
    start_lr: float = 0.0002
    warmup: float = 40
    weight_decay: float = 0.04
    # ours: iterations per epoch; null: the images found // (data.batch_size x world size), the official len(loader)
    ipe: Optional[int] = _Ipe()
    max_steps: Optional[int] = None  # ours: stop after this many steps without changing the schedules
    max_nonfinite_steps: int = 10  # ours: stop after this many consecutive steps skipped for a NaN/inf loss or grad
    clip_grad: Optional[float] = None  # ours: I-JEPA does not clip; a number clips after warmup, as V-JEPA

    lr_schedule: ClassVar[str] = "cosine"  # WarmupCosineSchedule (what the shared Schedules reads)


@dataclass(frozen=True)
class IJEPAModelView:
    """The model options the runtime reads under `cfg.model` (the official I-JEPA keeps them in `meta:`)."""
    model_name: str
    embed_dim: Optional[int]
    depth: Optional[int]
    num_heads: Optional[int]
    pred_depth: int
    pred_embed_dim: int
    attention: str
    use_activation_checkpointing: bool = False  # a V-JEPA 2 key; distributed.activation_checkpointing sets it here


@dataclass
class IJEPAConfig:
    recipe: ClassVar[str] = "ijepa"
    dead_keys: ClassVar[dict] = DEAD_KEYS
    data: IJEPADataConfig = field(default_factory=IJEPADataConfig)
    logging: IJEPALoggingConfig = field(default_factory=IJEPALoggingConfig)
    mask: IJEPAMaskConfig = field(default_factory=IJEPAMaskConfig)
    meta: IJEPAMetaConfig = field(default_factory=IJEPAMetaConfig)
    optimization: IJEPAOptimizationConfig = field(default_factory=IJEPAOptimizationConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # ours

    start_checkpoint: ClassVar[None] = None  # the checkpoint a fresh run starts from (I-JEPA: none)
    folder_key: ClassVar[str] = "logging.folder"
    nodes: ClassVar[int] = 1  # the SLURM layout keys of V-JEPA files; an I-JEPA run takes it from the launcher
    tasks_per_node: ClassVar[int] = 1

    def __post_init__(self):
        if self.optimization.__dict__.get("_resolve_ipe") is None:  # dataclasses.replace keeps the first root's
            self.optimization.__dict__["_resolve_ipe"] = self._count_ipe

    @staticmethod
    def missing_keys(raw) -> list[tuple[str, str]]:
        """(key path, message) for each official key the raw file lacks (the official reader needs them all)."""
        raw = raw if isinstance(raw, dict) else {}
        out = []
        for section, keys in OFFICIAL_KEYS.items():
            values = raw.get(section)
            if not isinstance(values, dict):
                out.append((section, f"missing section: the official I-JEPA reader needs it, with "
                                     f"{', '.join(keys)}"))
                continue
            out += [(f"{section}.{key}", "missing: the official I-JEPA reader requires every key (args[...])")
                    for key in keys if key not in values]
        return out

    @property
    def model(self) -> IJEPAModelView:
        m = self.meta
        return IJEPAModelView(m.model_name, m.embed_dim, m.depth, m.num_heads, m.pred_depth, m.pred_emb_dim,
                              m.attention)

    @property
    def resumes(self) -> bool:
        return self.meta.load_checkpoint

    def _count_ipe(self) -> int:
        """The official ipe = len(loader): images // global batch (drop-last), on this launch's world size."""
        from jepa_scale.data.image_batches import open_images
        from jepa_scale.distributed.env import detect

        records = open_images(self.data)
        return max(1, len(records) // (self.data.batch_size * detect().world_size))

    def problems(self) -> list[tuple[str, str]]:
        out = []

        def need(ok: bool, key: str, msg: str):
            if not ok:
                out.append((key, msg))

        d, mk, m, o = self.data, self.mask, self.meta, self.optimization
        need(d.batch_size > 0, "data.batch_size", f"must be positive, got {d.batch_size}")
        need(mk.patch_size > 0, "mask.patch_size", f"must be positive, got {mk.patch_size}")
        if mk.patch_size > 0:
            need(d.crop_size % mk.patch_size == 0, "data.crop_size",
                 f"{d.crop_size} is not divisible by mask.patch_size={mk.patch_size}")
        need(len(d.crop_scale) == 2 and 0 < d.crop_scale[0] <= d.crop_scale[1] <= 1, "data.crop_scale",
             f"must be [low, high] with 0 < low <= high <= 1, got {d.crop_scale}")
        need(d.num_workers >= 0, "data.num_workers", f"must be >= 0, got {d.num_workers}")
        need(d.max_consecutive_failures > 0, "data.max_consecutive_failures", "must be positive")
        for key, what in (("use_color_distortion", "colour distortion"), ("use_gaussian_blur", "Gaussian blur"),
                          ("use_horizontal_flip", "horizontal flips")):
            need(not getattr(d, key), f"data.{key}", f"{what} is not implemented (every official I-JEPA config "
                                                     f"keeps it false: the recipe's only augmentation is the crop)")
        for key in ("aspect_ratio", "enc_mask_scale", "pred_mask_scale"):
            pair = getattr(mk, key)
            need(len(pair) == 2 and 0 <= pair[0] <= pair[1], f"mask.{key}",
                 f"must be [low, high] with 0 <= low <= high, got {pair}")
        need(mk.num_enc_masks > 0, "mask.num_enc_masks", f"must be positive, got {mk.num_enc_masks}")
        need(mk.num_pred_masks > 0, "mask.num_pred_masks", f"must be positive, got {mk.num_pred_masks}")
        from jepa_scale.models.vit import PRESETS

        need(m.model_name in PRESETS, "meta.model_name",
             f"unknown model_name {m.model_name!r} (choose one of {', '.join(PRESETS)})")
        need(m.attention in ("sdpa", "math", "xformers"), "meta.attention",
             f"must be sdpa, math or xformers, got {m.attention!r}")
        need(m.pred_type == "transformer", "meta.pred_type",
             f"must be transformer, got {m.pred_type!r}: the Mamba predictor is a V-JEPA 1 option (app: vjepa, with "
             f"model.pred_type), and I-JEPA's predictor is a ViT over image patches")
        need(m.pred_depth > 0, "meta.pred_depth", f"must be positive, got {m.pred_depth}")
        need(m.pred_emb_dim > 0, "meta.pred_emb_dim", f"must be positive, got {m.pred_emb_dim}")
        need(len(o.ema) == 2 and 0 <= o.ema[0] <= o.ema[1] <= 1, "optimization.ema",
             f"must be [start, end] with 0 <= start <= end <= 1, got {o.ema}")
        need(o.__dict__.get("_ipe") is None or o.__dict__["_ipe"] > 0, "optimization.ipe",
             "must be positive, or null (the images found // the global batch)")
        need(o.epochs > 0, "optimization.epochs", f"must be positive, got {o.epochs}")
        need(o.max_steps is None or o.max_steps > 0, "optimization.max_steps", "must be positive or null")
        need(o.max_nonfinite_steps > 0, "optimization.max_nonfinite_steps", "must be positive")
        need(o.clip_grad is None or o.clip_grad > 0, "optimization.clip_grad", "must be positive or null")
        run_problems(need, self.logging, self.distributed, d.batch_size)  # our logging and distributed rules
        return out
