"""The typed trees of the frozen-evaluation configs: the official V-JEPA 1 schema (`data`, `optimization`,
`pretrain`) and the V-JEPA 2 one (`experiment`, `model_kwargs`), each for video and for image classification.

Field names are the official keys, so the official files load unchanged; our additions are the `probe:` and
`distributed:` sections, the model overrides beside `model_name`, and a V1 video eval's `audio:` section (an
AV-JEPA backbone: pretraining's own `AudioConfig`, so the spectrograms are the ones it was trained on). What the keys *mean* (the V1 frame step read
from `pretrain:`, the output folder, the head grid) is resolved once, in `jepa_scale.evals.spec`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from jepa_scale.config.avjepa_schema import AudioConfig, AVJEPAConfig
from jepa_scale.config.schema import DistributedConfig

EVAL_NAMES = ("video_classification_frozen", "image_classification_frozen")
PROBE_INPUTS = ("video", "audio", "both")  # what the encoder sees of a clip (probe.inputs)
_SLURM = ("the job layout, read by launch/slurm.py and launch/submit.py; a run itself uses the processes its "
          "launcher started")
_V1_NO_EFFECT = "passed to the official V1 ViT, which swallows it (no effect there either)"

# key path -> why it changes nothing here; per schema, as `schema.DEAD_KEYS` is for pretraining
V1_DEAD_KEYS = {
    "nodes": _SLURM, "tasks_per_node": _SLURM,
    "data.frame_step": "the official V1 eval reads the frame step from pretrain.frame_step (default 4), not from "
                       "data:; set pretrain.frame_step to change it",
    "pretrain.use_silu": _V1_NO_EFFECT, "pretrain.tight_silu": _V1_NO_EFFECT, "pretrain.use_sdpa": _V1_NO_EFFECT,
}
V2_DEAD_KEYS = {
    "nodes": _SLURM, "tasks_per_node": _SLURM, "cpus_per_task": _SLURM, "mem_per_gpu": _SLURM,
    "use_fsdp": "injected by the official launchers; the probe here runs on distributed.engine",
    "max_workers": "nothing reads it in the official eval either (it reads num_workers, default 12)",
    "model_kwargs.module_name": "the encoder wrapper follows eval_name here",
    "model_kwargs.wrapper_kwargs.max_frames": "sizes a temporal position table that use_pos_embed: false never uses",
    "experiment.optimization.use_pos_embed": "not read by the official eval (model_kwargs.wrapper_kwargs is)",
}


@dataclass
class ProbeConfig:  # ours
    """How our probe run differs from, or adds to, the official one (defaults: the correct behaviour)."""
    val_only: bool = False  # load the probe and report validation accuracy (V2 has it at the top level too)
    probe_checkpoint: Optional[str] = None  # a probe file to evaluate or start from (default: the run's latest)
    output_folder: Optional[str] = None  # default: the official {folder}/{eval_name}/{tag}
    train_augment: bool = True  # the official RandAugment / crop / erasing; false: the eval transform (cacheable)
    feature_cache: bool = True  # encoder features computed once and reused where they do not change
    cache_folder: Optional[str] = None  # default: {output folder}/feature_cache
    official_float16: bool = False  # use_bfloat16: true runs float16 + GradScaler, as the official code does
    official_val_clip_sampling: bool = False  # the official val draws random windows in long videos
    official_fixed_order: bool = False  # V1 never reshuffles the training set between epochs
    num_workers: Optional[int] = None  # default: the official count, capped by this machine's cores
    seed: int = 0
    log_freq: int = 20
    tensorboard: bool = True
    keep_latest: int = 2
    overwrite: bool = False
    max_train_batches: Optional[int] = None  # per epoch, for smoke tests and benchmarks (null: the whole set)
    # video | audio | both (jointly, one token sequence): what of each clip the encoder sees; audio needs an AV
    # backbone (an `audio:` section)
    inputs: str = "video"


@dataclass
class V1VideoData:
    dataset_train: str = ""
    dataset_val: str = ""
    dataset_type: str = "VideoDataset"
    num_classes: int = 0
    frames_per_clip: int = 16
    num_segments: int = 1
    num_views_per_segment: int = 1
    frame_step: int = 4  # dead in V1 (see V1_DEAD_KEYS)


@dataclass
class V1ImageData:
    root_path: str = ""
    image_folder: str = ""
    num_classes: int = 0
    resolution: int = 224
    dataset_name: str = "ImageNet"


@dataclass
class V1ImageOptimization:
    num_epochs: int = 20
    batch_size: int = 16
    weight_decay: float = 0.001
    lr: float = 0.001
    start_lr: float = 0.001
    final_lr: float = 0.0
    warmup: float = 0.0
    use_bfloat16: bool = False


@dataclass
class V1VideoOptimization(V1ImageOptimization):
    attend_across_segments: bool = False
    resolution: int = 224


@dataclass
class EncoderOverrides:  # ours, beside the official backbone keys of both schemas
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_ratio: Optional[float] = None


@dataclass
class V1Pretrain(EncoderOverrides):
    model_name: str = ""
    checkpoint_key: str = "target_encoder"
    clip_duration: Optional[float] = None
    frames_per_clip: int = 16
    frame_step: int = 4  # absent from the official files, but what the V1 eval samples with
    tubelet_size: int = 2
    uniform_power: bool = False
    use_silu: bool = False
    tight_silu: bool = False
    use_sdpa: bool = True
    patch_size: int = 16
    folder: str = ""
    checkpoint: str = "jepa-latest.pth.tar"
    write_tag: str = "jepa"
    modality_embed: bool = False  # ours: an AV-JEPA backbone trained with model.modality_embed (needs audio:)
    # ours, VideoMamba backbones: the run's model.mamba_divide_out (changes the forward: must match the run) and
    # model.mamba_dt_init (only the random-init baseline's dt bias depends on it)
    mamba_divide_out: bool = False
    mamba_dt_init: str = "videomamba"


@dataclass
class _Root:
    nodes: int = 1
    tasks_per_node: int = 1
    tag: str = ""
    eval_name: str = ""
    resume_checkpoint: bool = False
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    schema = ""  # "v1" | "v2"
    modality = ""  # "video" | "image"

    def problems(self) -> list[tuple[str, str]]:
        out = []

        def need(ok: bool, key: str, msg: str):
            if not ok:
                out.append((key, msg))

        need(self.eval_name in EVAL_NAMES, "eval_name", f"must be one of {', '.join(EVAL_NAMES)}")
        p = self.probe
        need(p.log_freq > 0, "probe.log_freq", "must be positive")
        need(p.keep_latest > 0, "probe.keep_latest", "must be positive")
        need(p.num_workers is None or p.num_workers >= 0, "probe.num_workers", "must be >= 0")
        need(p.max_train_batches is None or p.max_train_batches > 0, "probe.max_train_batches", "must be positive")
        need(self.distributed.engine in ("auto", "single", "ddp"), "distributed.engine",
             f"a probe runs on auto, single or ddp (the frozen encoder is replicated), got "
             f"{self.distributed.engine!r}")
        need(self.distributed.collective_timeout_s > 0, "distributed.collective_timeout_s", "must be positive")
        need(p.inputs in PROBE_INPUTS, "probe.inputs", f"must be one of {', '.join(PROBE_INPUTS)}, got {p.inputs!r}")
        # only a V1 video root has an `audio:` section; the others never see sound
        need(p.inputs == "video" or getattr(self, "audio", None) is not None, "probe.inputs",
             f"{p.inputs!r} needs an audio-visual backbone: add the AV-JEPA run's `audio:` section (V1 video evals)")
        self._problems(need)
        return out

    def _problems(self, need):
        raise NotImplementedError


def _backbone_problems(need, prefix: str, enc, frames: int | None = None):
    from jepa_scale.models import BACKBONES

    if frames is not None:
        need(frames > 1, f"{prefix}.frames_per_clip", "an image backbone (1 frame: the official FrameAggregation, "
                                                       "each frame encoded alone) is not implemented yet")
    need(bool(enc.model_name), f"{prefix}.model_name", "is required (e.g. vit_large)")
    if enc.model_name:
        need(enc.model_name in BACKBONES, f"{prefix}.model_name", BACKBONES.unknown(enc.model_name))
    need(enc.patch_size > 0, f"{prefix}.patch_size", "must be positive")
    need(enc.tubelet_size > 0, f"{prefix}.tubelet_size", "must be positive")


def _video_data_problems(need, prefix: str, d, frames_per_clip_key: str):
    need(bool(d.dataset_train), f"{prefix}.dataset_train", "is required (a CSV list or a shard folder)")
    need(bool(d.dataset_val), f"{prefix}.dataset_val", "is required (a CSV list or a shard folder)")
    need(d.dataset_type == "VideoDataset", f"{prefix}.dataset_type", f"only VideoDataset is read, got {d.dataset_type!r}")
    need(d.num_classes > 0, f"{prefix}.num_classes", "must be positive")
    need(d.frames_per_clip > 0, f"{prefix}.{frames_per_clip_key}", "must be positive")
    need(d.num_segments > 0, f"{prefix}.num_segments", "must be positive")
    need(d.num_views_per_segment > 0, f"{prefix}.num_views_per_segment", "must be positive")


def _optim_problems(need, prefix: str, o):
    need(o.num_epochs > 0, f"{prefix}.num_epochs", "must be positive")
    need(o.batch_size > 0, f"{prefix}.batch_size", "must be positive")


def _mamba_backbone_problems(need, pt: V1Pretrain):
    from jepa_scale.models.videomamba import MAMBA_DT_INITS, MAMBA_PRESETS

    need(pt.mamba_dt_init in MAMBA_DT_INITS, "pretrain.mamba_dt_init",
         f"must be {' or '.join(MAMBA_DT_INITS)}, got {pt.mamba_dt_init!r}")
    for key, default in (("mamba_divide_out", False), ("mamba_dt_init", "videomamba")):
        need(getattr(pt, key) == default or pt.model_name in MAMBA_PRESETS, f"pretrain.{key}",
             f"is a VideoMamba option and {pt.model_name!r} is not a VideoMamba backbone: remove it")


def _av_backbone_problems(need, audio: AudioConfig | None, pt: V1Pretrain):
    if audio is None:
        need(not pt.modality_embed, "pretrain.modality_embed", "is an AV-JEPA encoder option: it needs the run's "
                                                               "`audio:` section")
        return
    from jepa_scale.models.videomamba import MAMBA_PRESETS

    need(pt.model_name not in MAMBA_PRESETS, "pretrain.model_name",
         f"{pt.model_name!r} is a VideoMamba backbone: an `audio:` section describes AV-JEPA's joint ViT")
    AVJEPAConfig(audio=audio)._audio_problems(need)  # pretraining's own checks, keys named audio.*


@dataclass
class EvalV1VideoConfig(_Root):
    data: V1VideoData = field(default_factory=V1VideoData)
    optimization: V1VideoOptimization = field(default_factory=V1VideoOptimization)
    pretrain: V1Pretrain = field(default_factory=V1Pretrain)
    audio: Optional[AudioConfig] = None  # ours: the AV-JEPA run's section; null: a video-only backbone
    schema, modality = "v1", "video"

    def _problems(self, need):
        _video_data_problems(need, "data", self.data, "frames_per_clip")
        _optim_problems(need, "optimization", self.optimization)
        _backbone_problems(need, "pretrain", self.pretrain, self.pretrain.frames_per_clip)
        o, pt = self.optimization, self.pretrain
        need(o.resolution % pt.patch_size == 0, "optimization.resolution",
             f"{o.resolution} is not divisible by pretrain.patch_size={pt.patch_size}")
        need(pt.frame_step > 0, "pretrain.frame_step", "must be positive")
        _av_backbone_problems(need, self.audio, pt)
        _mamba_backbone_problems(need, pt)


@dataclass
class EvalV1ImageConfig(_Root):
    data: V1ImageData = field(default_factory=V1ImageData)
    optimization: V1ImageOptimization = field(default_factory=V1ImageOptimization)
    pretrain: V1Pretrain = field(default_factory=V1Pretrain)
    schema, modality = "v1", "image"

    def _problems(self, need):
        d = self.data
        need(bool(d.root_path), "data.root_path", "is required (the folder holding image_folder)")
        need(d.num_classes > 0, "data.num_classes", "must be positive")
        need(d.resolution % self.pretrain.patch_size == 0, "data.resolution",
             f"{d.resolution} is not divisible by pretrain.patch_size={self.pretrain.patch_size}")
        _optim_problems(need, "optimization", self.optimization)
        # frames_per_clip 1 is an image backbone (I-JEPA's 2-D ViT): the images go in as they are
        need(self.pretrain.frames_per_clip > 0, "pretrain.frames_per_clip", "must be positive")
        _backbone_problems(need, "pretrain", self.pretrain)
        _av_backbone_problems(need, None, self.pretrain)


# -- V-JEPA 2
@dataclass
class V2Classifier:
    num_heads: int = 16
    num_probe_blocks: int = 4


@dataclass
class V2VideoData:
    dataset_type: str = "VideoDataset"
    dataset_train: str = ""
    dataset_val: str = ""
    num_classes: int = 0
    frames_per_clip: int = 16
    frame_step: Optional[int] = 4
    fps: Optional[float] = None
    clip_duration: Optional[float] = None
    num_segments: int = 1
    num_views_per_segment: int = 1
    resolution: int = 224
    normalization: Optional[list[list[float]]] = None


@dataclass
class V2ImageData:
    dataset_name: str = "ImageNet"
    num_classes: int = 0
    root_path: str = ""
    image_folder: str = ""
    resolution: int = 224
    normalization: Optional[list[list[float]]] = None


@dataclass
class HeadKwargs:
    lr: float = 0.001
    start_lr: float = 0.001
    final_lr: float = 0.0
    warmup: float = 0.0
    weight_decay: float = 0.01
    final_weight_decay: float = 0.01


@dataclass
class V2Optimization:
    batch_size: int = 4
    num_epochs: int = 20
    use_bfloat16: bool = False
    use_pos_embed: bool = False
    multihead_kwargs: list[HeadKwargs] = field(default_factory=lambda: [HeadKwargs()])


@dataclass
class V2Experiment:
    classifier: V2Classifier = field(default_factory=V2Classifier)
    optimization: V2Optimization = field(default_factory=V2Optimization)


@dataclass
class V2VideoExperiment(V2Experiment):
    data: V2VideoData = field(default_factory=V2VideoData)


@dataclass
class V2ImageExperiment(V2Experiment):
    data: V2ImageData = field(default_factory=V2ImageData)


@dataclass
class V2Encoder(EncoderOverrides):
    checkpoint_key: str = "target_encoder"
    model_name: str = ""
    patch_size: int = 16
    tubelet_size: int = 2
    uniform_power: bool = False
    use_rope: bool = False
    img_temporal_dim_size: Optional[int] = None
    use_sdpa: bool = True
    use_silu: bool = False
    wide_silu: bool = True
    use_activation_checkpointing: bool = False


@dataclass
class V2PretrainKwargs:
    encoder: V2Encoder = field(default_factory=V2Encoder)


@dataclass
class V2WrapperKwargs:
    max_frames: int = 128
    use_pos_embed: bool = False
    out_layers: Optional[list[int]] = None
    img_as_video_nframes: int = 16


@dataclass
class V2ModelKwargs:
    checkpoint: str = ""
    module_name: str = ""
    pretrain_kwargs: V2PretrainKwargs = field(default_factory=V2PretrainKwargs)
    wrapper_kwargs: V2WrapperKwargs = field(default_factory=V2WrapperKwargs)


@dataclass
class _V2Root(_Root):
    cpus_per_task: int = 0
    mem_per_gpu: str = ""
    folder: str = ""
    max_workers: int = 0
    num_workers: int = 12
    val_only: bool = False
    use_fsdp: bool = False
    model_kwargs: V2ModelKwargs = field(default_factory=V2ModelKwargs)
    schema = "v2"

    def _v2_problems(self, need):
        o, enc = self.experiment.optimization, self.model_kwargs.pretrain_kwargs.encoder
        _optim_problems(need, "experiment.optimization", o)
        need(len(o.multihead_kwargs) > 0, "experiment.optimization.multihead_kwargs", "needs at least one head")
        c = self.experiment.classifier
        need(c.num_probe_blocks > 0, "experiment.classifier.num_probe_blocks", "must be positive")
        need(c.num_heads > 0, "experiment.classifier.num_heads", "must be positive")
        _backbone_problems(need, "model_kwargs.pretrain_kwargs.encoder", enc)
        need(not self.model_kwargs.wrapper_kwargs.use_pos_embed, "model_kwargs.wrapper_kwargs.use_pos_embed",
             "the temporal position table of the official wrapper is not implemented (every official config keeps "
             "it false)")
        need(self.model_kwargs.wrapper_kwargs.out_layers is None, "model_kwargs.wrapper_kwargs.out_layers",
             "the multi-level encoder (outputs of several layers) is not implemented yet")
        need(self.num_workers >= 0, "num_workers", "must be >= 0")
        d = self.experiment.data
        need(d.resolution % enc.patch_size == 0, "experiment.data.resolution",
             f"{d.resolution} is not divisible by the encoder's patch_size={enc.patch_size}")
        need(d.normalization is None or (len(d.normalization) == 2 and all(len(x) == 3 for x in d.normalization)),
             "experiment.data.normalization", "must be [[mean r, g, b], [std r, g, b]]")


@dataclass
class EvalV2VideoConfig(_V2Root):
    experiment: V2VideoExperiment = field(default_factory=V2VideoExperiment)
    modality = "video"

    def _problems(self, need):
        self._v2_problems(need)
        d = self.experiment.data
        _video_data_problems(need, "experiment.data", d, "frames_per_clip")
        given = [k for k in ("frame_step", "fps", "clip_duration") if getattr(d, k) is not None]
        need(len(given) == 1, "experiment.data.frame_step",
             f"exactly one of frame_step, fps, clip_duration must be set (as the official dataset requires), got "
             f"{', '.join(given) or 'none'}")
        need(d.fps is None, "experiment.data.fps", "fps-based sampling comes with the V-JEPA 2 recipe; use frame_step")


@dataclass
class EvalV2ImageConfig(_V2Root):
    experiment: V2ImageExperiment = field(default_factory=V2ImageExperiment)
    modality = "image"

    def _problems(self, need):
        self._v2_problems(need)
        d = self.experiment.data
        need(bool(d.root_path), "experiment.data.root_path", "is required (the folder holding image_folder)")
        need(d.num_classes > 0, "experiment.data.num_classes", "must be positive")


_ROOTS = {("v1", "video"): EvalV1VideoConfig, ("v1", "image"): EvalV1ImageConfig,
          ("v2", "video"): EvalV2VideoConfig, ("v2", "image"): EvalV2ImageConfig}


def is_eval_config(raw) -> bool:
    return isinstance(raw, dict) and "eval_name" in raw


def eval_root(raw: dict, fail) -> type:
    """The root class of an eval config: V2 when it has `experiment` or `model_kwargs`, else V1; video or image by
    `eval_name`. fail(key, message) raises the loader's file:line error."""
    name = raw.get("eval_name")
    if name not in EVAL_NAMES:
        fail("eval_name", f"must be one of {', '.join(EVAL_NAMES)}, got {name!r}")
    schema = "v2" if ("experiment" in raw or "model_kwargs" in raw) else "v1"
    return _ROOTS[(schema, "video" if name.startswith("video") else "image")]


def eval_dead_keys(raw: dict) -> dict:
    return V2_DEAD_KEYS if ("experiment" in raw or "model_kwargs" in raw) else V1_DEAD_KEYS
