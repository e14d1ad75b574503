"""Literal transcriptions that the audio front ends (jepa_scale/data/audio_features.py) are tested against.

- librosa 0.11 (librosa/filters.py `mel`, librosa/core/convert.py `hz_to_mel`, `mel_to_hz`, `mel_frequencies`,
  `fft_frequencies`, librosa/core/spectrum.py `power_to_db` and `stft`'s framing), in numpy, as written there.
- scipy.ndimage.zoom(order=1) along the time axis (output j at input j (in - 1) / (out - 1), scipy's default
  grid_mode=False), in numpy.
- torchaudio.compliance.kaldi.fbank (pytorch/audio src/torchaudio/compliance/kaldi.py), in torch as written
  there, restricted to what AudioMAE uses (no VTLN warp, no energy column), and AudioMAE's `_wav2fbank` around it
  (facebookresearch/AudioMAE dataset.py).
- AV-JEPA's spectrogram (johnshizhu/AVJEPA src/datasets/audiovideo_dataset.py) with `magnitude=True` as upstream
  (mel of |STFT|) and `magnitude=False` as ours (mel of |STFT|^2).
Checked once against librosa 0.11.0 and scipy 1.17.1 installed in a throwaway environment (they are not
dependencies: librosa brings numba, scikit-learn, soundfile, soxr, pooch and more).
"""
import math

import numpy as np
import torch

# ---------------------------------------------------------------- librosa (numpy)


def hz_to_mel(frequencies, htk=False):
    frequencies = np.asanyarray(frequencies)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    f_min = 0.0
    f_sp = 200.0 / 3
    mels = (frequencies - f_min) / f_sp
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0
    if frequencies.ndim:
        log_t = frequencies >= min_log_hz
        mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    elif frequencies >= min_log_hz:
        mels = min_log_mel + np.log(frequencies / min_log_hz) / logstep
    return mels


def mel_to_hz(mels, htk=False):
    mels = np.asanyarray(mels)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_min = 0.0
    f_sp = 200.0 / 3
    freqs = f_min + f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - f_min) / f_sp
    logstep = np.log(6.4) / 27.0
    if mels.ndim:
        log_t = mels >= min_log_mel
        freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    elif mels >= min_log_mel:
        freqs = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return freqs


def mel_frequencies(n_mels=128, fmin=0.0, fmax=11025.0, htk=False):
    min_mel = hz_to_mel(fmin, htk=htk)
    max_mel = hz_to_mel(fmax, htk=htk)
    mels = np.linspace(min_mel, max_mel, n_mels)
    return mel_to_hz(mels, htk=htk)


def fft_frequencies(sr=22050, n_fft=2048):
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def mel(sr, n_fft, n_mels=128, fmin=0.0, fmax=None, htk=False, dtype=np.float32):
    """librosa.filters.mel with norm="slaney" (the default)."""
    if fmax is None:
        fmax = float(sr) / 2
    n_mels = int(n_mels)
    weights = np.zeros((n_mels, int(1 + n_fft // 2)), dtype=dtype)
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


def power_to_db(S, ref=1.0, amin=1e-10, top_db=80.0):
    S = np.asarray(S)
    magnitude = S
    if callable(ref):
        ref_value = ref(magnitude)
    else:
        ref_value = np.abs(ref)
    log_spec = 10.0 * np.log10(np.maximum(amin, magnitude))
    log_spec -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def stft(y, n_fft=2048, hop_length=None, center=True, pad_mode="constant"):
    """librosa.stft with window="hann" (scipy's get_window(fftbins=True): periodic), win_length = n_fft, in
    float64: centred frames (y padded by n_fft // 2 on both sides), frame t = y_pad[t hop : t hop + n_fft]."""
    if hop_length is None:
        hop_length = int(n_fft // 4)
    fft_window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    y = np.asarray(y, np.float64)
    if center:
        y = np.pad(y, [(n_fft // 2, n_fft // 2)], mode=pad_mode)
    n_frames = 1 + (len(y) - n_fft) // hop_length
    frames = np.stack([y[t * hop_length: t * hop_length + n_fft] for t in range(n_frames)], axis=1)
    return np.fft.rfft(fft_window[:, None] * frames, axis=0)


# ---------------------------------------------------------------- scipy.ndimage.zoom(order=1), time axis


def zoom_order1_time(x, num_frames):
    """scipy.ndimage.zoom(x, (1, num_frames / T), order=1) for x [F, T]: output shape round(T * zoom); output
    column j reads input position j (T - 1) / (out - 1) (1 when out == 1), linearly interpolated."""
    x = np.asarray(x, np.float64)
    T = x.shape[1]
    out = int(round(T * (num_frames / T)))
    step = (T - 1) / (out - 1) if out > 1 else 1.0
    result = np.empty((x.shape[0], out))
    for j in range(out):
        pos = j * step
        i0 = min(int(np.floor(pos)), T - 1)
        i1 = min(i0 + 1, T - 1)
        w = pos - i0
        result[:, j] = (1 - w) * x[:, i0] + w * x[:, i1]
    return result


# ---------------------------------------------------------------- AV-JEPA (upstream, and with its bug fixed)


def avjepa_spectrogram(y, sr, n_mels=128, n_fft=2048, hop_length=512, top_db=80.0, num_frames=192,
                       magnitude=False):
    """The upstream steps: librosa.stft -> melspectrogram(S=...) -> power_to_db(ref=np.max, top_db) -> zoom.
    magnitude=True is upstream's S=np.abs(stft); False (ours) the power np.abs(stft) ** 2."""
    S = np.abs(stft(y, n_fft=n_fft, hop_length=hop_length))
    if not magnitude:
        S = S ** 2
    mel_S = np.einsum("...ft,mf->...mt", S, mel(sr, 2 * (S.shape[-2] - 1), n_mels=n_mels).astype(np.float64))
    S_dB = power_to_db(mel_S, ref=np.max, top_db=top_db)
    return zoom_order1_time(S_dB, num_frames)


# ---------------------------------------------------------------- torchaudio.compliance.kaldi (torch)

EPSILON = torch.tensor(torch.finfo(torch.float).eps)
MILLISECONDS_TO_SECONDS = 0.001


def _next_power_of_2(x: int) -> int:
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def _get_strided(waveform, window_size, window_shift, snip_edges):
    assert waveform.dim() == 1
    num_samples = waveform.size(0)
    assert snip_edges
    if num_samples < window_size:
        return torch.empty((0, 0), dtype=waveform.dtype, device=waveform.device)
    m = 1 + (num_samples - window_size) // window_shift
    strides = (window_shift * waveform.stride(0), waveform.stride(0))
    sizes = (m, window_size)
    return waveform.as_strided(sizes, strides)


def _feature_window_function(window_type, window_size, blackman_coeff, device, dtype):
    if window_type == "hanning":
        return torch.hann_window(window_size, periodic=False, device=device, dtype=dtype)
    elif window_type == "povey":
        return torch.hann_window(window_size, periodic=False, device=device, dtype=dtype).pow(0.85)
    raise Exception("Invalid window type " + window_type)


def _get_log_energy(strided_input, epsilon, energy_floor):
    log_energy = torch.max(strided_input.pow(2).sum(1), epsilon).log()
    if energy_floor == 0.0:
        return log_energy
    return torch.max(log_energy, torch.tensor(math.log(energy_floor), dtype=strided_input.dtype))


def _get_window(waveform, padded_window_size, window_size, window_shift, window_type, blackman_coeff, snip_edges,
                raw_energy, energy_floor, dither, remove_dc_offset, preemphasis_coefficient):
    device, dtype = waveform.device, waveform.dtype
    epsilon = EPSILON.to(device=device, dtype=dtype)
    strided_input = _get_strided(waveform, window_size, window_shift, snip_edges)
    assert dither == 0.0
    if remove_dc_offset:
        row_means = torch.mean(strided_input, dim=1).unsqueeze(1)
        strided_input = strided_input - row_means
    if raw_energy:
        signal_log_energy = _get_log_energy(strided_input, epsilon, energy_floor)
    if preemphasis_coefficient != 0.0:
        offset_strided_input = torch.nn.functional.pad(strided_input.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
        strided_input = strided_input - preemphasis_coefficient * offset_strided_input[:, :-1]
    window_function = _feature_window_function(window_type, window_size, blackman_coeff, device, dtype).unsqueeze(0)
    strided_input = strided_input * window_function
    if padded_window_size != window_size:
        padding_right = padded_window_size - window_size
        strided_input = torch.nn.functional.pad(
            strided_input.unsqueeze(0), (0, padding_right), mode="constant", value=0).squeeze(0)
    if not raw_energy:
        signal_log_energy = _get_log_energy(strided_input, epsilon, energy_floor)
    return strided_input, signal_log_energy


def mel_scale_scalar(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def mel_scale(freq):
    return 1127.0 * (1.0 + freq / 700.0).log()


def get_mel_banks(num_bins, window_length_padded, sample_freq, low_freq, high_freq):
    """vtln_warp_factor == 1.0 (no warp)."""
    assert num_bins > 3, "Must have at least 3 mel bins"
    assert window_length_padded % 2 == 0
    num_fft_bins = window_length_padded / 2
    nyquist = 0.5 * sample_freq
    if high_freq <= 0.0:
        high_freq += nyquist
    assert (0.0 <= low_freq < nyquist) and (0.0 < high_freq <= nyquist) and (low_freq < high_freq)
    fft_bin_width = sample_freq / window_length_padded
    mel_low_freq = mel_scale_scalar(low_freq)
    mel_high_freq = mel_scale_scalar(high_freq)
    mel_freq_delta = (mel_high_freq - mel_low_freq) / (num_bins + 1)
    bin = torch.arange(num_bins).unsqueeze(1)
    left_mel = mel_low_freq + bin * mel_freq_delta
    center_mel = mel_low_freq + (bin + 1.0) * mel_freq_delta
    right_mel = mel_low_freq + (bin + 2.0) * mel_freq_delta
    mel = mel_scale(fft_bin_width * torch.arange(num_fft_bins)).unsqueeze(0)
    up_slope = (mel - left_mel) / (center_mel - left_mel)
    down_slope = (right_mel - mel) / (right_mel - center_mel)
    bins = torch.max(torch.zeros(1), torch.min(up_slope, down_slope))
    return bins


def fbank(waveform, blackman_coeff=0.42, channel=-1, dither=0.0, energy_floor=1.0, frame_length=25.0,
          frame_shift=10.0, high_freq=0.0, htk_compat=False, low_freq=20.0, min_duration=0.0, num_mel_bins=23,
          preemphasis_coefficient=0.97, raw_energy=True, remove_dc_offset=True, round_to_power_of_two=True,
          sample_frequency=16000.0, snip_edges=True, subtract_mean=False, use_energy=False, use_log_fbank=True,
          use_power=True, window_type="povey"):
    """torchaudio.compliance.kaldi.fbank; waveform [channels, n]. Returns [frames, num_mel_bins]."""
    assert not use_energy and not subtract_mean
    device, dtype = waveform.device, waveform.dtype
    channel = max(channel, 0)
    waveform = waveform[channel, :]
    window_shift = int(sample_frequency * frame_shift * MILLISECONDS_TO_SECONDS)
    window_size = int(sample_frequency * frame_length * MILLISECONDS_TO_SECONDS)
    padded_window_size = _next_power_of_2(window_size) if round_to_power_of_two else window_size
    assert 2 <= window_size <= len(waveform)
    strided_input, signal_log_energy = _get_window(
        waveform, padded_window_size, window_size, window_shift, window_type, blackman_coeff, snip_edges,
        raw_energy, energy_floor, dither, remove_dc_offset, preemphasis_coefficient)
    spectrum = torch.fft.rfft(strided_input).abs()
    if use_power:
        spectrum = spectrum.pow(2.0)
    mel_energies = get_mel_banks(num_mel_bins, padded_window_size, sample_frequency, low_freq, high_freq)
    mel_energies = mel_energies.to(device=device, dtype=dtype)
    mel_energies = torch.nn.functional.pad(mel_energies, (0, 1), mode="constant", value=0)
    mel_energies = torch.mm(spectrum, mel_energies.T)
    if use_log_fbank:
        mel_energies = torch.max(mel_energies, EPSILON.to(device=device, dtype=dtype)).log()
    return mel_energies


def audiomae_fbank(wave, sr, melbins=128, target_length=1024, norm_mean=-4.2677393, norm_std=4.5689974):
    """AudioMAE dataset.py `_wav2fbank` (no mixup, no roll) then `__getitem__`'s normalisation, without SpecAugment:
    [target_length (time), melbins], transposed here to [1, melbins, time] as our front ends give it."""
    waveform = torch.as_tensor(np.asarray(wave, np.float32))[None]
    waveform = waveform - waveform.mean()
    fb = fbank(waveform, htk_compat=True, sample_frequency=sr, use_energy=False, window_type="hanning",
               num_mel_bins=melbins, dither=0.0, frame_shift=10)
    n_frames = fb.shape[0]
    p = target_length - n_frames
    if p > 0:
        m = torch.nn.ZeroPad2d((0, 0, 0, p))
        fb = m(fb)
    elif p < 0:
        fb = fb[0:target_length, :]
    fb = (fb - norm_mean) / (norm_std * 2)
    return fb.T[None]
