"""Spectrogram front ends for AV-JEPA, in plain torch (torchaudio and librosa are not dependencies).

Both give float32 [1, n_mels, time]: mel bands (low to high frequency) by time columns.

- `log_mel_avjepa`: AV-JEPA's front end (librosa STFT -> mel -> power_to_db -> time axis zoomed to a fixed width)
  with its bugs fixed: the mel of the power spectrum (upstream took the magnitude) of a mono track (upstream fed
  interleaved stereo samples; `jepa_scale.data.audio` down-mixes).
- `kaldi_fbank`: AudioMAE's front end, `torchaudio.compliance.kaldi.fbank` as AudioMAE calls it, normalised with
  AudioMAE's (x - mean) / (2 std), transposed to [mel, time] so both front ends agree on the layout.

`tests/reference_audio.py` holds literal transcriptions of librosa and torchaudio that these are tested against.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_AMIN = 1e-10  # librosa.power_to_db's floor before the log
_KALDI_EPS = torch.finfo(torch.float32).eps  # torchaudio's floor before the log (C++ float epsilon)


def _wave(wave) -> torch.Tensor:
    return torch.as_tensor(np.asarray(wave, dtype=np.float32) if not torch.is_tensor(wave) else wave,
                           dtype=torch.float32).reshape(-1)


def _hz_to_mel_slaney(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (librosa's htk=False): linear below 1 kHz, logarithmic above."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_hz / f_sp + torch.log(torch.clamp(hz, min=min_log_hz) / min_log_hz) / logstep
    return torch.where(hz >= min_log_hz, log, linear)


def _mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(sr: float, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None
                   ) -> torch.Tensor:
    """float32 [n_mels, 1 + n_fft // 2]: librosa.filters.mel's default bank (Slaney mel scale, htk=False, and
    norm="slaney": each triangle scaled by 2 / its width in Hz, so bands have about equal energy)."""
    fmax = float(sr) / 2 if fmax is None else fmax
    fft_hz = torch.fft.rfftfreq(n_fft, d=1.0 / sr, dtype=torch.float64)
    edges = torch.tensor([fmin, fmax], dtype=torch.float64)
    lo, hi = _hz_to_mel_slaney(edges)
    mel_hz = _mel_to_hz_slaney(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64))
    width = mel_hz.diff()
    ramps = mel_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0).float()  # librosa stores float32, then scales
    return weights * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None].float()


def power_to_db(S: torch.Tensor, top_db: float | None = 80.0) -> torch.Tensor:
    """librosa.power_to_db(S, ref=np.max, top_db=top_db): dB relative to the largest value of S, floored at
    top_db below it; so in [-top_db, 0] (all 0 for an all-zero S, as librosa)."""
    ref = torch.clamp(S.max(), min=_AMIN)
    db = 10.0 * torch.log10(torch.clamp(S, min=_AMIN)) - 10.0 * torch.log10(ref)
    return torch.maximum(db, db.max() - top_db) if top_db is not None else db


def zoom_time(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[F, T] -> [F, num_frames] by linear interpolation along time, as scipy.ndimage.zoom(order=1) does: output
    column j samples input position j (T - 1) / (num_frames - 1), so first maps to first and last to last."""
    return F.interpolate(x[None], size=num_frames, mode="linear", align_corners=True)[0]


def log_mel_avjepa(wave, sample_rate: int, n_mels: int = 128, n_fft: int = 2048, hop_length: int = 512,
                   top_db: float = 80.0, num_frames: int = 192, pad_mode: str = "constant") -> torch.Tensor:
    """AV-JEPA's spectrogram of a mono float wave [n]: float32 [1, n_mels, num_frames], in dB relative to the
    clip's loudest mel bin, so values lie in [-top_db, 0]. librosa.stft (periodic Hann window of n_fft, centred
    frames every hop_length samples, padded with `pad_mode`: librosa >= 0.10 pads with zeros) -> power -> mel
    (`mel_filterbank`) -> `power_to_db` -> time axis zoomed to num_frames columns (`zoom_time`)."""
    x = _wave(wave)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)
    spec = torch.stft(x, n_fft, hop_length, window=window, center=True, pad_mode=pad_mode, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [1 + n_fft // 2, frames]
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ power
    return zoom_time(power_to_db(mel, top_db), num_frames)[None]


def _next_power_of_2(n: int) -> int:
    return 1 if n == 0 else 2 ** (n - 1).bit_length()


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, low_freq: float = 20.0,
                    high_freq: float = 0.0) -> torch.Tensor:
    """float32 [n_mels, n_fft // 2 + 1]: Kaldi's triangles, equally spaced on the HTK mel scale 1127 ln(1 + f/700)
    between low_freq and high_freq (<= 0: that far below Nyquist), unnormalised; the Nyquist bin gets no weight."""
    nyquist = 0.5 * sample_rate
    high_freq = high_freq + nyquist if high_freq <= 0 else high_freq
    mel = lambda f: 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)  # noqa: E731
    edges = mel(low_freq) + torch.arange(n_mels + 2, dtype=torch.float64) * (mel(high_freq) - mel(low_freq)) / (
        n_mels + 1)
    bins = mel(sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float64))
    up = (bins[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    down = (edges[2:, None] - bins[None]) / (edges[2:] - edges[1:-1])[:, None]
    return F.pad(torch.clamp(torch.minimum(up, down), min=0), (0, 1)).float()


def _kaldi_window(kind: str, size: int) -> torch.Tensor:
    hann = torch.hann_window(size, periodic=False, dtype=torch.float32)  # Kaldi's symmetric Hann
    if kind == "hanning":
        return hann
    if kind == "povey":
        return hann.pow(0.85)  # Hann raised to 0.85: like Hann but zero at the ends
    raise ValueError(f"window_type {kind!r}: only 'hanning' (AudioMAE's) and 'povey' (Kaldi's default)")


def _kaldi_frames(x: torch.Tensor, size: int, shift: int, window: torch.Tensor, padded: int) -> torch.Tensor:
    """[frames, padded]: snip_edges framing (only whole frames), DC removed per frame, pre-emphasis 0.97 (the
    first sample against itself), windowed, zero-padded to the FFT size."""
    if len(x) < size:
        return torch.zeros(0, padded)
    frames = x.unfold(0, size, shift)
    frames = frames - frames.mean(dim=1, keepdim=True)
    frames = frames - 0.97 * torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    return F.pad(frames * window, (0, padded - size))


def kaldi_fbank(wave, sample_rate: int, n_mels: int = 128, num_frames: int = 1024, frame_shift_ms: float = 10.0,
                frame_length_ms: float = 25.0, mean: float = -4.2677393, std: float = 4.5689974,
                window_type: str = "hanning") -> torch.Tensor:
    """AudioMAE's features of a mono float wave [n]: float32 [1, n_mels, num_frames], frame t at t * shift. The
    wave's mean is removed, then torchaudio.compliance.kaldi.fbank(htk_compat=True, use_energy=False,
    window_type='hanning', dither=0, frame_shift=10, num_mel_bins=n_mels): log mel energies of the power spectrum
    (floored at float32 eps), low_freq 20 Hz to Nyquist; zero-padded or cut to num_frames frames, then
    (x - mean) / (2 std) (AudioMAE's AudioSet statistics by default). A wave shorter than one frame gives only
    padding (torchaudio would raise)."""
    x = _wave(wave)
    x = x - x.mean() if len(x) else x
    shift = int(sample_rate * frame_shift_ms * 0.001)  # as torchaudio: truncated, in this order of operations
    size = int(sample_rate * frame_length_ms * 0.001)
    padded = _next_power_of_2(size)
    frames = _kaldi_frames(x, size, shift, _kaldi_window(window_type, size), padded)
    if len(frames):
        power = torch.fft.rfft(frames).abs().pow(2.0)
        fbank = torch.clamp(power @ kaldi_mel_banks(n_mels, padded, sample_rate).T, min=_KALDI_EPS).log()
    else:  # an FFT of no frames is an error in MKL
        fbank = torch.zeros(0, n_mels)
    fbank = F.pad(fbank, (0, 0, 0, max(0, num_frames - len(fbank))))[:num_frames]
    return ((fbank - mean) / (2 * std)).T[None].contiguous()
