"""The AV-JEPA pretraining config root (`app: avjepa`): V1's sections, plus `audio:` (the front end), audio keys in
each `mask:` entry, the encoder's modality embedding and the per-modality loss weights (family.md 4).

Upstream AV-JEPA hard-codes its audio sizes (128 mel x 192 columns, 96 tokens, the [1568 | 96] split); here they
all follow from this section, and the checks below say which value does not fit which other one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from jepa_scale.config.schema import LossConfig, MaskConfig, ModelConfig, PretrainConfig

FRONT_ENDS = ("avjepa", "kaldi")
HIDE = ("none", "video", "audio")


@dataclass
class AudioConfig:  # ours (upstream reads none of this from its config)
    sample_rate: int = 16000  # the track is resampled to this (upstream kept each file's own rate)
    # avjepa: AV-JEPA's log-mel (power mel, dB relative to the clip's max, time axis resized to num_frames columns);
    # kaldi: AudioMAE's 10 ms kaldi fbank, zero-padded or cut to num_frames frames, normalised with norm_mean/std
    front_end: str = "avjepa"
    n_mels: int = 128
    num_frames: int = 192  # spectrogram columns (time) given to the encoder
    n_fft: int = 2048  # avjepa front end
    hop_length: int = 512  # avjepa front end
    top_db: float = 80.0  # avjepa front end
    norm_mean: float = -4.2677393  # kaldi front end: AudioMAE's AudioSet statistics, (x - mean) / (2 std)
    norm_std: float = 4.5689974
    patch_size: int = 16  # square patches of the spectrogram: (n_mels / p) x (num_frames / p) tokens
    missing: str = "fail"  # a video without an audio track: fail (skipped, counted) | silence (zeros)


@dataclass
class AVMaskConfig(MaskConfig):
    # ours: blocks of audio tokens (frequency x time), each at a random place; null: the video config's num_blocks
    audio_num_blocks: Optional[int] = None
    audio_block_size: list[int] = field(default_factory=lambda: [4, 6])  # upstream's fixed 4 x 6 on an 8 x 12 grid
    # ours: none | video | audio. Hiding a modality makes all its tokens targets and none context, and the other
    # modality all context: one modality is predicted from the other
    hide: str = "none"


@dataclass
class AVModelConfig(ModelConfig):
    modality_embed: bool = False  # ours: a learned embedding per modality added to its tokens (upstream: none)


@dataclass
class AVLossConfig(LossConfig):
    video_weight: float = 1.0  # ours
    audio_weight: float = 1.0  # ours
    # modality: per mask config, the weighted mean of the two modalities' mean losses; tokens: upstream's mean over
    # the concatenated tokens (each token weighs its modality's weight), so audio weighs by its token count
    weighting: str = "modality"


@dataclass
class AVJEPAConfig(PretrainConfig):
    recipe: ClassVar[str] = "avjepa"
    app: str = "avjepa"
    audio: AudioConfig = field(default_factory=AudioConfig)
    mask: list[AVMaskConfig] = field(default_factory=lambda: [AVMaskConfig()])
    model: AVModelConfig = field(default_factory=AVModelConfig)
    loss: AVLossConfig = field(default_factory=AVLossConfig)

    @property
    def audio_grid(self) -> tuple[int, int]:
        """(frequency, time) tokens of the spectrogram."""
        a = self.audio
        return a.n_mels // a.patch_size, a.num_frames // a.patch_size

    def _recipe_problems(self, need):
        super()._recipe_problems(need)
        from jepa_scale.models.videomamba import MAMBA_PRESETS

        need(self.model.model_name not in MAMBA_PRESETS, "model.model_name",
             f"{self.model.model_name!r} is a VideoMamba backbone: AV-JEPA's joint encoder is a ViT (attention "
             f"across both modalities' tokens)")
        need(self.data.num_clips == 1, "data.num_clips", "must be 1 for AV-JEPA (one audio window per clip)")
        need(not self.data.dataset_fpcs or len(set(self.data.dataset_fpcs)) == 1, "data.dataset_fpcs",
             "AV-JEPA takes one clip length (data.num_frames)")
        need(self.data.decoder != "dali", "data.decoder", "dali decodes video only: AV-JEPA reads audio with PyAV "
                                                          "(use pyav or auto)")
        self._audio_problems(need)
        self._av_mask_problems(need)
        self._av_loss_problems(need)

    def _audio_problems(self, need):
        a = self.audio
        need(a.front_end in FRONT_ENDS, "audio.front_end", f"must be one of {', '.join(FRONT_ENDS)}, got {a.front_end!r}")
        need(a.missing in ("fail", "silence"), "audio.missing", f"must be fail or silence, got {a.missing!r}")
        for key in ("sample_rate", "n_mels", "num_frames", "n_fft", "hop_length", "patch_size"):
            need(getattr(a, key) > 0, f"audio.{key}", f"must be positive, got {getattr(a, key)}")
        if a.patch_size > 0:
            for key in ("n_mels", "num_frames"):
                need(getattr(a, key) % a.patch_size == 0, f"audio.{key}",
                     f"{getattr(a, key)} is not divisible by audio.patch_size={a.patch_size}")
        need(a.norm_std > 0, "audio.norm_std", f"must be positive, got {a.norm_std}")

    def _av_mask_problems(self, need):
        F, T = self.audio_grid if self.audio.patch_size > 0 else (0, 0)
        for i, mc in enumerate(self.mask):
            need(mc.hide in HIDE, f"mask[{i}].hide", f"must be one of {', '.join(HIDE)}, got {mc.hide!r}")
            need(mc.audio_num_blocks is None or mc.audio_num_blocks > 0, f"mask[{i}].audio_num_blocks",
                 f"must be positive or null, got {mc.audio_num_blocks}")
            size = mc.audio_block_size  # unused by a configuration that hides a modality
            need(mc.hide != "none" or len(size) == 2 and 0 < size[0] <= F and 0 < size[1] <= T, f"mask[{i}].audio_block_size",
                 f"must be [frequency, time] tokens within the {F} x {T} audio grid (audio.n_mels / patch_size x "
                 f"audio.num_frames / patch_size), got {size}")

    def _av_loss_problems(self, need):
        lo = self.loss
        need(lo.weighting in ("modality", "tokens"), "loss.weighting",
             f"must be modality or tokens, got {lo.weighting!r}")
        need(lo.video_weight >= 0 and lo.audio_weight >= 0 and lo.video_weight + lo.audio_weight > 0,
             "loss.video_weight", f"the modality weights must be >= 0 and not both 0, got {lo.video_weight} "
                                  f"(video) and {lo.audio_weight} (audio)")
        weights = {"video": lo.video_weight, "audio": lo.audio_weight}
        for i, mc in enumerate(self.mask):
            need(mc.hide == "none" or weights.get(mc.hide, 1) > 0, f"mask[{i}].hide",
                 f"hides {mc.hide}, whose loss weight is 0: this configuration would predict nothing that counts")
        need(lo.reg_coeff == 0, "loss.reg_coeff", "is V-JEPA 1's std regulariser; AV-JEPA runs without it (0)")
