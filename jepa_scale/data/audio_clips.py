"""The audio of a clip's time window as the encoder takes it: [1, n_mels, num_frames], from the `audio:` section."""
from __future__ import annotations

import torch

from jepa_scale.data.audio import AudioError, load_clip_audio
from jepa_scale.data.audio_features import kaldi_fbank, log_mel_avjepa
from jepa_scale.data.pyav_decoder import VideoError


class ClipAudio:
    """(record, start s, end s) -> spectrogram [1, F, T]. A record without usable audio raises VideoError (unless
    `audio.missing: silence`): to a batch, a sample without its sound cannot give a clip, so it is skipped and
    counted with the reason."""

    def __init__(self, audio_cfg):
        self.a = audio_cfg

    def __call__(self, rec, start_s: float, end_s: float) -> torch.Tensor:
        a = self.a
        try:
            wave = load_clip_audio(rec, start_s, end_s, a.sample_rate, a.missing)
        except AudioError as e:
            raise VideoError(f"audio: {e.reason}") from None
        if a.front_end == "kaldi":
            return kaldi_fbank(wave, a.sample_rate, n_mels=a.n_mels, num_frames=a.num_frames, mean=a.norm_mean,
                               std=a.norm_std)
        return log_mel_avjepa(wave, a.sample_rate, n_mels=a.n_mels, n_fft=a.n_fft, hop_length=a.hop_length,
                              top_db=a.top_db, num_frames=a.num_frames)
