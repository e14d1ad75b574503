"""What an eval config means, resolved once from either official schema: the rest of the eval code reads an
`EvalSpec` and never the schema it came from.

The official quirks are resolved here, named: V1 samples with `pretrain.frame_step` (its `data.frame_step` is dead),
V1's outputs live under `pretrain.folder`, V1 has one probe head with two parameter groups and clipping, V2 a grid
of heads with one group each and no clipping, `use_bfloat16` means float16 in the official code.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from jepa_scale.config.avjepa_schema import AVJEPAConfig
from jepa_scale.config.schema import PretrainConfig

V1_FINAL_WD = 1e-6  # the official V1 eval never passes final_wd: its optimiser factory's default applies


@dataclass(frozen=True)
class HeadSchedule:
    lr: float
    start_lr: float
    final_lr: float
    warmup: float  # epochs
    weight_decay: float
    final_weight_decay: float


@dataclass(frozen=True)
class EvalSpec:
    schema: str  # v1 | v2
    modality: str  # video | image
    eval_name: str
    tag: str
    num_classes: int
    train_data: str  # CSV list, shard folder, or image folder
    val_data: str
    resolution: int
    frames_per_clip: int  # of an eval clip (video); frames an image is repeated to (image)
    frame_step: int
    clip_duration: float | None
    ceil_fps: bool  # V2 rounds the fps up when a clip duration sets the frame step
    num_segments: int
    num_views: int
    attend_across_segments: bool
    normalization: tuple | None  # ((mean), (std)); None: ImageNet's
    batch_size: int
    epochs: int
    heads: tuple[HeadSchedule, ...]
    probe_layout: str  # v1 | v2 (block order, proj, rescale)
    probe_depth: int
    probe_num_heads: int | None  # None: the encoder's
    decay_norms_and_biases: bool  # V2: one group per head, decayed whole; V1: biases and 1-D params excluded
    clip_grad: float | None
    encoder_cfg: PretrainConfig  # builds the backbone (an AVJEPAConfig for an audio-visual one)
    inputs: str  # video | audio | both: what of each clip the encoder sees (probe.inputs)
    checkpoint: str  # the pretrained file ("" for none)
    checkpoint_from: str  # the config keys that name it (for messages)
    checkpoint_key: str
    key_fallback: str | None  # V1 falls back to `encoder` when the key is missing
    folder: Path  # outputs: CSV, checkpoints, tensorboard, feature cache
    csv_tag: str  # the epoch CSV is `{csv_tag}_r{rank}.csv` (V1: the write_tag; V2: `log`)
    latest_name: str  # the official probe file name in `folder`
    resume: bool
    val_only: bool
    amp: str  # bfloat16 | float16 | float32 (on CUDA; the CPU runs float32)
    num_workers: int  # the official count (capped by the cores when used)
    probe: object  # the config's probe: section (ours)
    distributed: object

    @property
    def audio(self):
        """The spectrogram settings of an audio-visual backbone (its pretraining `audio:` section), else None."""
        return getattr(self.encoder_cfg, "audio", None)

    @property
    def reads_video(self) -> bool:
        return self.inputs in ("video", "both")

    @property
    def reads_audio(self) -> bool:
        return self.inputs in ("audio", "both")

    @property
    def audio_tokens(self) -> int:
        """Tokens of one segment's spectrogram (the backbone's audio grid)."""
        return math.prod(self.encoder_cfg.audio_grid)


def encoder_config(model_name: str, overrides, *, resolution: int, frames: int, tubelet: int, patch: int,
                   uniform_power: bool, use_rope: bool, use_sdpa: bool, audio=None,
                   modality_embed: bool = False) -> PretrainConfig:
    """A pretraining config whose model/data sections describe the eval's backbone, so it is built exactly as
    pretraining builds it. With an `audio:` section: an AV-JEPA config (its joint encoder, sized by that section)."""
    base, av = (AVJEPAConfig(audio=audio), {"modality_embed": modality_embed}) if audio is not None else \
        (PretrainConfig(), {})
    model = dataclasses.replace(base.model, model_name=model_name, uniform_power=uniform_power, use_rope=use_rope,
                                embed_dim=overrides.embed_dim, depth=overrides.depth, num_heads=overrides.num_heads,
                                mlp_ratio=overrides.mlp_ratio, attention="sdpa" if use_sdpa else "math",
                                mamba_divide_out=getattr(overrides, "mamba_divide_out", False),
                                mamba_dt_init=getattr(overrides, "mamba_dt_init", "videomamba"), **av)
    data = dataclasses.replace(base.data, crop_size=resolution, num_frames=frames, tubelet_size=tubelet,
                               patch_size=patch)
    meta = dataclasses.replace(base.meta, use_sdpa=use_sdpa)
    return dataclasses.replace(base, model=model, data=data, meta=meta)


def _amp(use_bfloat16: bool, probe) -> str:
    if not use_bfloat16:
        return "float32"
    return "float16" if probe.official_float16 else "bfloat16"


def _image_splits(d) -> tuple[str, str]:
    """The ImageFolder train and val folders of an image eval's data section (both schemas name them alike)."""
    root = Path(d.root_path) / d.image_folder
    return str(root / "train"), str(root / "val")


def _v1(cfg) -> EvalSpec:
    pt, o, p = cfg.pretrain, cfg.optimization, cfg.probe
    video = cfg.modality == "video"
    d = cfg.data
    resolution = o.resolution if video else d.resolution
    folder = Path(p.output_folder or Path(pt.folder) / cfg.eval_name / cfg.tag)
    head = HeadSchedule(o.lr, o.start_lr, o.final_lr, o.warmup, o.weight_decay, V1_FINAL_WD)
    train, val = (d.dataset_train, d.dataset_val) if video else _image_splits(d)
    return EvalSpec(
        schema="v1", modality=cfg.modality, eval_name=cfg.eval_name, tag=cfg.tag, num_classes=d.num_classes,
        train_data=train, val_data=val, resolution=resolution,
        frames_per_clip=d.frames_per_clip if video else pt.frames_per_clip, frame_step=pt.frame_step,
        clip_duration=pt.clip_duration, ceil_fps=False, num_segments=d.num_segments if video else 1,
        num_views=d.num_views_per_segment if video else 1,
        attend_across_segments=o.attend_across_segments if video else True, normalization=None,
        batch_size=o.batch_size, epochs=o.num_epochs, heads=(head,), probe_layout="v1", probe_depth=1,
        probe_num_heads=None, decay_norms_and_biases=False, clip_grad=1.0,
        encoder_cfg=encoder_config(pt.model_name, pt, resolution=resolution, frames=pt.frames_per_clip,
                                   tubelet=pt.tubelet_size, patch=pt.patch_size, uniform_power=pt.uniform_power,
                                   use_rope=False, use_sdpa=True, audio=getattr(cfg, "audio", None),
                                   modality_embed=pt.modality_embed),
        inputs=p.inputs,
        checkpoint=str(Path(pt.folder) / pt.checkpoint) if pt.folder else "",
        checkpoint_from="pretrain.folder and pretrain.checkpoint", checkpoint_key=pt.checkpoint_key,
        key_fallback="encoder", folder=folder, csv_tag=pt.write_tag,
        latest_name=f"{pt.write_tag}-latest.pth.tar", resume=cfg.resume_checkpoint, val_only=p.val_only,
        amp=_amp(o.use_bfloat16, p), num_workers=12 if video else 8, probe=p, distributed=cfg.distributed)


def _v2(cfg) -> EvalSpec:
    x, mk, p = cfg.experiment, cfg.model_kwargs, cfg.probe
    enc, d, o = mk.pretrain_kwargs.encoder, x.data, x.optimization
    video = cfg.modality == "video"
    frames = d.frames_per_clip if video else mk.wrapper_kwargs.img_as_video_nframes
    heads = tuple(HeadSchedule(h.lr, h.start_lr, h.final_lr, h.warmup, h.weight_decay, h.final_weight_decay)
                  for h in o.multihead_kwargs)
    train, val = (d.dataset_train, d.dataset_val) if video else _image_splits(d)
    return EvalSpec(
        schema="v2", modality=cfg.modality, eval_name=cfg.eval_name, tag=cfg.tag, num_classes=d.num_classes,
        train_data=train, val_data=val, resolution=d.resolution, frames_per_clip=frames,
        frame_step=(d.frame_step or 4) if video else 1, clip_duration=d.clip_duration if video else None,
        ceil_fps=True, num_segments=d.num_segments if video else 1, num_views=d.num_views_per_segment if video else 1,
        attend_across_segments=True, normalization=tuple(map(tuple, d.normalization)) if d.normalization else None,
        batch_size=o.batch_size, epochs=o.num_epochs, heads=heads, probe_layout="v2",
        probe_depth=x.classifier.num_probe_blocks, probe_num_heads=x.classifier.num_heads,
        decay_norms_and_biases=True, clip_grad=None,
        encoder_cfg=encoder_config(enc.model_name, enc, resolution=d.resolution, frames=frames,
                                   tubelet=enc.tubelet_size, patch=enc.patch_size, uniform_power=enc.uniform_power,
                                   use_rope=enc.use_rope, use_sdpa=enc.use_sdpa),
        inputs=p.inputs, checkpoint=mk.checkpoint, checkpoint_from="model_kwargs.checkpoint",
        checkpoint_key=enc.checkpoint_key, key_fallback=None,
        folder=Path(p.output_folder or Path(cfg.folder) / cfg.eval_name / cfg.tag), csv_tag="log",
        latest_name="latest.pt", resume=cfg.resume_checkpoint, val_only=cfg.val_only or p.val_only,
        amp=_amp(o.use_bfloat16, p), num_workers=cfg.num_workers if video else 8, probe=p,
        distributed=cfg.distributed)


def eval_spec(cfg) -> EvalSpec:
    """The resolved meaning of a loaded eval config (any of the four roots in `config.eval_schema`)."""
    return _v1(cfg) if cfg.schema == "v1" else _v2(cfg)
