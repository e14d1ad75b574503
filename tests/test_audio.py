"""The audio data layer of AV-JEPA: decoding on the video's clock, stereo down-mix, WAV members in shards,
make_shards --audio, the two spectrogram front ends against literal transcriptions, and the synthetic tones."""
import builtins
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from jepa_scale.data import audio as audio_mod
from jepa_scale.data.audio import (AudioError, clip_window, decode_audio, encode_wav, load_clip_audio,
                                   read_wav_window, resample)
from jepa_scale.data.audio_features import (kaldi_fbank, kaldi_mel_banks, log_mel_avjepa, mel_filterbank,
                                            power_to_db, zoom_time)
from jepa_scale.data.csv_source import VideoRecord
from jepa_scale.data.pyav_decoder import PyAVDecoder
from jepa_scale.data.shards.make import STATE, make_shards
from jepa_scale.data.shards.source import read_shard_datasets
from jepa_scale.data.shards.transcode import TranscodeOptions
from jepa_scale.data.synthetic import (class_tone, class_tone_hz, make_moving_shapes, moving_shape_frames,
                                       write_video)
from tests import reference_audio as R

SRC_RATE = 48000  # the test file's own rate: decoding resamples it
RATE = 16000
TONES = ((1000.0, 1.0, 1.5), (3000.0, 2.0, 2.5))  # (Hz, start s, end s)
SECONDS = 3.0


def _tones_wave(rate: int = SRC_RATE) -> np.ndarray:
    t = np.arange(int(SECONDS * rate)) / rate
    wave = np.zeros(len(t), np.float32)
    for hz, a, b in TONES:
        on = (t >= a) & (t < b)
        wave[on] = 0.5 * np.sin(2 * np.pi * hz * (t[on] - a))
    return wave


def _record(path) -> VideoRecord:
    return VideoRecord(str(path), 0, f"{path}:1")


def _frames(n: int = 24, label: int = 0) -> np.ndarray:
    return moving_shape_frames(label, n, 32, 48, np.random.default_rng(label))


@pytest.fixture(scope="module")
def tones_mp4(tmp_path_factory):
    """A 3 s mp4 (8 fps video, AAC at 48 kHz): silence, 1 kHz over [1.0, 1.5) s and 3 kHz over [2.0, 2.5) s."""
    path = tmp_path_factory.mktemp("tones") / "tones.mp4"
    write_video(path, _frames(int(SECONDS * 8)), fps=8, audio=_tones_wave(), audio_rate=SRC_RATE)
    return path


def _write_audio_only(path, channels: np.ndarray, rate: int, codec: str):
    """channels: float32 [C, n] (C = 1 or 2) -> an audio-only file with `codec`."""
    layout = "stereo" if len(channels) == 2 else "mono"
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=rate)
        s.layout = layout
        fmt = s.codec_context.format.name
        step = s.codec_context.frame_size or 1024
        for i in range(0, channels.shape[1], step):
            chunk = channels[:, i:i + step]
            if fmt == "s16":  # packed (interleaved) 16-bit
                data = np.rint(chunk.T.reshape(1, -1) * 32767).astype(np.int16)
            else:  # fltp: planar float
                data = np.ascontiguousarray(chunk, np.float32)
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _lag_s(decoded: np.ndarray, source: np.ndarray, rate: int, max_lag_s: float = 0.1) -> float:
    """How late `decoded` is against `source` (seconds), from their cross-correlation."""
    n = len(source)
    d = np.zeros(n)
    d[:min(n, len(decoded))] = decoded[:n]
    spec = np.fft.rfft(d, 2 * n) * np.conj(np.fft.rfft(source, 2 * n))
    corr = np.fft.irfft(spec)
    m = int(max_lag_s * rate)
    lags = np.r_[np.arange(0, m + 1), np.arange(-m, 0)]
    return lags[np.argmax(np.r_[corr[:m + 1], corr[-m:]])] / rate


# ------------------------------------------------------------------ decoding on the video's clock


def test_aac_track_is_aligned_with_the_video_clock(tones_mp4):
    source = _tones_wave()
    decoded = decode_audio(str(tones_mp4), SRC_RATE)
    assert len(decoded) == len(source)  # the encoder's trailing padding is cut to the declared duration
    lag = _lag_s(decoded, source, SRC_RATE)
    print(f"AAC (mp4, 48 kHz) alignment error: {lag * 1e3:.3f} ms")
    assert abs(lag) < 0.025
    # and after resampling to 16 kHz, against the source's own samples at 16 kHz
    at16 = decode_audio(tones_mp4.read_bytes(), RATE)  # encoded bytes, as a shard gives them
    assert len(at16) == SECONDS * RATE
    assert abs(_lag_s(at16, _tones_wave(RATE), RATE)) < 0.025


def test_raw_adts_aac_keeps_its_priming_delay(tmp_path):
    # a raw .aac stream has no edit list: nothing says the first 1024 samples are the encoder's priming, so the
    # track decodes 1024 samples (21.3 ms at 48 kHz) late; still under the 25 ms we accept
    path = tmp_path / "raw.aac"
    _write_audio_only(path, _tones_wave()[None], SRC_RATE, "aac")
    assert _lag_s(decode_audio(str(path), SRC_RATE), _tones_wave(), SRC_RATE) == pytest.approx(1024 / SRC_RATE)
    assert 1024 / SRC_RATE < 0.025


def test_a_late_audio_track_is_preceded_by_silence(tmp_path):
    # the audio stream starts 0.25 s after the first frame: sample 0 must still be the first frame's moment
    path = tmp_path / "late.mp4"
    wave = _tones_wave()
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        a = out.add_stream("aac", rate=SRC_RATE)
        a.layout = "mono"
        for f in _frames(24):
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        delay = int(0.25 * SRC_RATE)
        for i in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, i:i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SRC_RATE, delay + i, Fraction(1, SRC_RATE)
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    decoded = decode_audio(str(path), SRC_RATE)
    assert abs(_lag_s(decoded, wave, SRC_RATE, max_lag_s=0.5) - 0.25) < 0.025
    assert np.abs(decoded[: int(0.2 * SRC_RATE)]).max() == 0


def test_stereo_is_down_mixed_not_interleaved(tmp_path):
    rate, seconds = 44100, 1.0
    t = np.arange(int(seconds * rate)) / rate
    left, right = 0.4 * np.sin(2 * np.pi * 500 * t), 0.4 * np.sin(2 * np.pi * 2000 * t)
    for codec, ext, tol in (("pcm_s16le", "wav", 1e-3), ("aac", "mp4", 0.02)):
        path = tmp_path / f"stereo.{ext}"
        _write_audio_only(path, np.stack([left, right]).astype(np.float32), rate, codec)
        mono = decode_audio(str(path), rate)
        assert len(mono) == len(t)  # interleaved L/R (upstream's bug) would be twice as long
        mid = slice(rate // 4, 3 * rate // 4)
        amp = {hz: 2 * abs(np.mean(mono[mid] * np.exp(-2j * np.pi * hz * t[mid]))) for hz in (500, 1000, 2000)}
        # FFmpeg's stereo -> mono: (L + R) / sqrt(2), each channel at -3 dB
        assert amp[500] == pytest.approx(0.4 / np.sqrt(2), rel=tol), codec
        assert amp[2000] == pytest.approx(0.4 / np.sqrt(2), rel=tol), codec
        assert amp[1000] < 0.01  # interleaving would move the tones (500 Hz read at twice the rate -> 1 kHz)


def test_clip_window_pads_and_cuts():
    wave = np.arange(10, dtype=np.float32) + 1
    assert clip_window(wave, 10, 0.2, 0.5).tolist() == [3, 4, 5]
    assert clip_window(wave, 10, 0.8, 1.2).tolist() == [9, 10, 0, 0]
    assert clip_window(wave, 10, -0.2, 0.1).tolist() == [0, 0, 1]
    assert len(clip_window(wave, 16000, 0.0, 0.0333)) == round(0.0333 * 16000)


def test_a_file_without_sound(tmp_path):
    path = tmp_path / "mute.mp4"
    write_video(path, _frames(16))
    with pytest.raises(AudioError, match="no audio track"):
        decode_audio(str(path), RATE)
    with pytest.raises(AudioError, match="no audio track"):
        load_clip_audio(_record(path), 0.0, 1.0, RATE)
    silent = load_clip_audio(_record(path), 0.25, 1.25, RATE, missing="silence")
    assert silent.shape == (RATE,) and not silent.any()
    with pytest.raises(AudioError, match="missing file"):
        load_clip_audio(_record(tmp_path / "nope.mp4"), 0.0, 1.0, RATE, missing="silence")
    with pytest.raises(ValueError, match="missing='quiet'"):
        load_clip_audio(_record(path), 0.0, 1.0, RATE, missing="quiet")


# ------------------------------------------------------------------ tones land in the right columns


def _crossings(level: np.ndarray, times: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    """Times where `level` crosses 6 dB below its steady value inside the tone (a centred window half over it)."""
    threshold = np.median(level[inside]) - 6.0
    on = np.flatnonzero(level > threshold)
    first, last = on[0], on[-1]
    rise = np.interp(threshold, level[[first - 1, first]], times[[first - 1, first]])
    fall = np.interp(threshold, level[[last + 1, last]], times[[last + 1, last]])
    return rise, fall


def _avjepa_view(wave, start_s):
    """(dB [mels, cols], the time of each column, the mel band of each tone, one hop in s)."""
    spec = log_mel_avjepa(wave, RATE)[0].numpy()
    assert spec.shape == (128, 192) and spec.min() >= -80.0 and spec.max() <= 0.0
    stft_frames = 1 + len(wave) // 512
    times = start_s + np.arange(192) * (stft_frames - 1) / 191 * 512 / RATE  # centred frames, zoomed
    bank = mel_filterbank(RATE, 2048, 128).numpy()
    bands = {hz: int(np.argmax(bank[:, round(hz * 2048 / RATE)])) for hz, _, _ in TONES}
    return spec, times, bands, 512 / RATE


def _kaldi_view(wave, start_s):
    spec = kaldi_fbank(wave, RATE, num_frames=300)[0].numpy()
    assert spec.shape == (128, 300)
    db = spec * 2 * 4.5689974 * 10 / np.log(10)  # back to dB (up to an offset): natural log -> 10 log10
    times = start_s + np.arange(300) * 0.010 + 0.0125  # snip_edges: frame t covers [t shift, t shift + 25 ms)
    n_frames = 1 + (len(wave) - 400) // 160
    bank = kaldi_mel_banks(128, 512, RATE).numpy()
    bands = {hz: int(np.argmax(bank[:, round(hz * 512 / RATE)])) for hz, _, _ in TONES}
    return db[:, :n_frames], times[:n_frames], bands, 0.010


@pytest.mark.parametrize("view", [_avjepa_view, _kaldi_view], ids=["avjepa", "kaldi"])
def test_tones_land_in_their_columns(tones_mp4, view):
    start, end = 0.5, 2.9
    wave = load_clip_audio(_record(tones_mp4), start, end, RATE)
    assert wave.shape == (round((end - start) * RATE),)
    spec, times, bands, hop = view(wave, start)
    for hz, a, b in TONES:
        inside = (times > a + 0.07) & (times < b - 0.07)  # past the longest window's half (64 ms)
        assert inside.sum() > 5
        peak = spec.argmax(axis=0)[inside]
        assert np.all(np.abs(peak - bands[hz]) <= 1), (hz, peak, bands[hz])
        rise, fall = _crossings(spec[bands[hz]], times, inside)
        assert abs(rise - a) <= hop and abs(fall - b) <= hop, (hz, rise, fall, hop)


@pytest.mark.parametrize("view", [_avjepa_view, _kaldi_view], ids=["avjepa", "kaldi"])
def test_a_window_that_starts_inside_a_tone(tones_mp4, view):
    start, end = 1.2, 2.2
    spec, times, bands, hop = view(load_clip_audio(_record(tones_mp4), start, end, RATE), start)
    early = times < 1.5 - 0.07
    assert np.all(spec.argmax(axis=0)[early] == bands[1000.0])
    level = spec[bands[1000.0]]
    threshold = np.median(level[early]) - 6.0
    last = np.flatnonzero(level > threshold)[-1]
    assert abs(np.interp(threshold, level[[last + 1, last]], times[[last + 1, last]]) - 1.5) <= hop
    late = times > 2.0 + 0.07
    assert np.all(np.abs(spec.argmax(axis=0)[late] - bands[3000.0]) <= 1)


# ------------------------------------------------------------------ WAV members


def test_wav_window_reads_only_its_bytes(tmp_path, tones_mp4, monkeypatch):
    wave = decode_audio(str(tones_mp4), RATE)
    member = encode_wav(wave, RATE)
    assert len(member) == 44 + 2 * len(wave)
    blob = tmp_path / "shard.tar"
    prefix, suffix = b"x" * 1536, b"y" * 4096
    blob.write_bytes(prefix + member + suffix)
    read = []

    def counting_open(*args, **kwargs):
        f = builtins.open(*args, **kwargs)
        real_read = f.read
        f.read = lambda n=-1: read.append(n) or real_read(n)
        return f

    monkeypatch.setattr(audio_mod, "open", counting_open, raising=False)
    for start, end in ((0.5, 2.9), (2.5, 3.4), (-0.1, 0.3), (0.0, 3.0)):
        read.clear()
        got = read_wav_window(str(blob), start, end, RATE, offset=len(prefix), size=len(member))
        want = clip_window(wave, RATE, start, end)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1 / 32768, (start, end)
        assert -1 not in read and sum(read) <= 64 + 2 * len(want)  # the header, then the window's samples
    # another rate than the member's: FFmpeg resamples the window (read with a margin)
    got = read_wav_window(str(blob), 0.9, 1.6, 8000, offset=len(prefix), size=len(member))
    want = clip_window(resample(wave, RATE, 8000), 8000, 0.9, 1.6)
    assert got.shape == want.shape and np.abs(got - want).max() < 0.01


def test_encode_wav_is_16_bit_pcm_mono():
    import io
    import wave as wavelib

    w = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0], np.float32)
    with wavelib.open(io.BytesIO(encode_wav(w, 8000))) as r:
        assert (r.getnchannels(), r.getsampwidth(), r.getframerate(), r.getnframes()) == (1, 2, 8000, 6)
        pcm = np.frombuffer(r.readframes(6), "<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32768, 32767]  # clipped, as FFmpeg's flt -> s16


# ------------------------------------------------------------------ make_shards --audio


@pytest.fixture(scope="module")
def av_csv(tmp_path_factory):
    """Three short videos: two with their class tone, one (line 3) without an audio track."""
    d = tmp_path_factory.mktemp("av_list")
    csv = make_moving_shapes(d, num_videos=2, num_frames=16, height=32, width=48, seed=2, audio=True)
    write_video(d / "mute.mp4", _frames(16, label=5))
    csv.write_text(csv.read_text() + f"{d / 'mute.mp4'} 5\n")
    return csv


def _sidecar_samples(out, manifest):
    return [s for tar in manifest["shards"] for s in json.loads((out / tar).with_suffix(".json").read_text())["samples"]]


def test_make_shards_audio_fail(av_csv, tmp_path):
    out = tmp_path / "fail"
    m = make_shards([str(av_csv)], str(out), TranscodeOptions(min_frames=8, audio=True), progress=False)
    assert m["num_samples"] == 2 and m["silent_audio"] == [] and m["num_silent_audio"] == 0
    assert [(f["line"], f["reason"]) for f in m["failures"]] == [(3, "no audio track")]
    samples = _sidecar_samples(out, m)
    assert all(set(s["members"]) == {"mp4", "wav", "json", "cls", "vinfo"} for s in samples)
    (records,), _ = read_shard_datasets([out])
    for rec, s in zip(records, samples):
        assert (rec.audio_offset, rec.audio_size) == tuple(s["members"]["wav"]) and rec.audio_offset > rec.offset
        assert rec.audio_size == 44 + 2 * round(s["duration"] * 16000)  # the video's duration, 16 kHz
        assert s["audio_rate"] == 16000 and s["silent_audio"] is False
        got = load_clip_audio(rec, 0.25, 1.5, 16000)
        want = clip_window(decode_audio(s["path"], 16000), 16000, 0.25, 1.5)
        assert np.abs(got - want).max() <= 1 / 32768
        inner = json.loads(open(rec.path, "rb").read()[s["members"]["json"][0]:][:s["members"]["json"][1]])
        assert inner["audio_rate"] == 16000


def test_make_shards_audio_silence_with_copy_by_the_command_line(av_csv, tmp_path, capsys):
    from data_tools.make_shards import main

    out = tmp_path / "silence"
    argv = ["--csv", str(av_csv), "--out", str(out), "--copy", "--min-frames", "8", "--audio", "--audio-rate", "8000",
            "--audio-missing", "silence"]
    assert main(argv) == 0
    assert "1 with silent audio" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["num_samples"] == 3 and m["failures"] == [] and m["num_silent_audio"] == 1
    assert m["silent_audio"] == [{"dataset": "videos", "line": 3, "path": str(av_csv.parent / "mute.mp4")}]
    assert m["options"]["audio"] and m["options"]["audio_rate"] == 8000
    (records,), _ = read_shard_datasets([out])
    by_label = {r.label: r for r in records}
    assert not load_clip_audio(by_label[5], 0.0, 2.0, 8000).any()
    assert load_clip_audio(by_label[1], 0.0, 1.0, 8000).std() > 0.1
    assert main(argv) == 0  # a rerun continues the same run


def test_audio_options_and_older_runs(av_csv, tmp_path, capsys):
    from data_tools.make_shards import main

    with pytest.raises(SystemExit) as e:
        main(["--csv", str(av_csv), "--out", str(tmp_path / "x"), "--audio-rate", "8000"])
    assert e.value.code == 2 and "without --audio" in capsys.readouterr().err
    # without --audio the run state is what it was before the audio options existed: older folders continue
    out = tmp_path / "old"
    argv = ["--csv", str(av_csv), "--out", str(out), "--min-frames", "8"]
    assert main(argv) == 0
    assert not {"audio", "audio_rate", "audio_missing"} & set(json.loads((out / STATE).read_text())["options"])
    assert main(argv + ["--audio"]) == 2
    assert "--audio: first run not given, this run given" in capsys.readouterr().err
    # with --audio they are part of it
    out = tmp_path / "av"
    assert main(argv[:3] + [str(out)] + argv[4:] + ["--audio"]) == 0
    assert json.loads((out / STATE).read_text())["options"]["audio_rate"] == 16000
    assert main(argv[:3] + [str(out)] + argv[4:] + ["--audio", "--audio-rate", "8000"]) == 2
    assert "--audio-rate: first run 16000, this run 8000" in capsys.readouterr().err


def test_shards_made_without_audio_say_so(av_csv, tmp_path):
    out = tmp_path / "noaudio"
    make_shards([str(av_csv)], str(out), TranscodeOptions(min_frames=8), progress=False)
    (records,), _ = read_shard_datasets([out])
    assert all(r.audio_offset == -1 for r in records)
    for missing in ("fail", "silence"):
        with pytest.raises(AudioError, match="made without make_shards --audio") as e:
            load_clip_audio(records[0], 0.0, 1.0, RATE, missing=missing)
        assert records[0].source in e.value.reason


# ------------------------------------------------------------------ front ends vs the transcriptions


def _random_wave(rng, rate, seconds):
    """Noise with a quiet start and a loud tone burst, so top_db and the floors are exercised."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    wave = rng.normal(0, 0.05, n) + 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t) * (t > seconds / 2)
    wave[: n // 5] *= 1e-4
    return wave.astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_log_mel_avjepa_equals_the_librosa_transcription(rate):
    rng = np.random.default_rng(rate)
    for seconds in (0.37, 1.0, 2.13):
        wave = _random_wave(rng, rate, seconds)
        ours = log_mel_avjepa(wave, rate)
        assert ours.shape == (1, 128, 192) and ours.dtype == torch.float32
        assert float(ours.min()) >= -80.0 and float(ours.max()) <= 0.0
        ref = R.avjepa_spectrogram(wave, rate)
        assert np.abs(ours[0].numpy() - ref).max() < 2e-3, seconds
    small = log_mel_avjepa(torch.as_tensor(wave), rate, n_mels=32, n_fft=256, hop_length=64, num_frames=48)
    assert np.abs(small[0].numpy() - R.avjepa_spectrogram(wave, rate, 32, 256, 64, num_frames=48)).max() < 2e-3


@pytest.mark.parametrize("rate", [16000, 44100])
def test_kaldi_fbank_equals_the_torchaudio_transcription(rate):
    rng = np.random.default_rng(rate + 1)
    for seconds, frames in ((0.37, 1024), (2.13, 128), (1.0, 98)):
        wave = _random_wave(rng, rate, seconds) + 0.02  # a DC offset: removed by both
        ours = kaldi_fbank(wave, rate, num_frames=frames)
        assert ours.shape == (1, 128, frames) and ours.dtype == torch.float32
        ref = R.audiomae_fbank(wave, rate, 128, frames)
        assert (ours - ref).abs().max() < 1e-4, seconds
    povey = kaldi_fbank(wave, rate, n_mels=64, num_frames=50, window_type="povey")
    ref = R.fbank(torch.as_tensor(wave - wave.mean())[None], sample_frequency=rate, num_mel_bins=64, dither=0.0)
    assert (povey[0].T[:len(ref)] * 2 * 4.5689974 - 4.2677393 - ref[:50]).abs().max() < 1e-3


def test_mel_filterbanks_equal_the_transcriptions():
    for sr, n_fft, n_mels in ((16000, 2048, 128), (44100, 2048, 128), (8000, 256, 32), (22050, 512, 40)):
        ours = mel_filterbank(sr, n_fft, n_mels).numpy()
        assert ours.shape == (n_mels, 1 + n_fft // 2)
        assert np.abs(ours - R.mel(sr, n_fft, n_mels)).max() < 1e-7
    assert np.abs(mel_filterbank(16000, 1024, 64, fmin=50, fmax=7000).numpy()
                  - R.mel(16000, 1024, 64, fmin=50, fmax=7000)).max() < 1e-7
    for sr, n_fft in ((16000, 512), (44100, 2048)):
        ref = R.get_mel_banks(128, n_fft, sr, 20.0, 0.0)
        assert (kaldi_mel_banks(128, n_fft, sr)[:, :-1] - ref).abs().max() < 1e-4


def test_db_and_zoom_pieces():
    rng = np.random.default_rng(0)
    S = rng.exponential(1.0, (16, 40)) ** 6
    ours = power_to_db(torch.as_tensor(S), 80.0).numpy()
    assert np.abs(ours - R.power_to_db(S, ref=np.max, top_db=80.0)).max() < 1e-9
    assert ours.max() == 0 and ours.min() == pytest.approx(-80.0)
    assert not power_to_db(torch.zeros(3, 4)).any()  # silence: everything at the reference, as librosa
    x = rng.normal(size=(5, 40))
    for n in (192, 7, 40, 1):
        z = zoom_time(torch.as_tensor(x), n).numpy()
        assert np.abs(z - R.zoom_order1_time(x, n)).max() < 1e-12
        assert np.allclose(z[:, 0], x[:, 0]) and (n == 1 or np.allclose(z[:, -1], x[:, -1]))  # corners map


def test_front_ends_on_silence_and_tiny_clips():
    assert torch.equal(log_mel_avjepa(np.zeros(8000, np.float32), RATE), torch.zeros(1, 128, 192))
    quiet = kaldi_fbank(np.zeros(100, np.float32), RATE, num_frames=10)  # shorter than one 25 ms frame
    assert torch.allclose(quiet, torch.full((1, 128, 10), 4.2677393 / (2 * 4.5689974)))


# ------------------------------------------------------------------ synthetic sound


def test_synthetic_tones_encode_the_class(tmp_path):
    csv = make_moving_shapes(tmp_path, num_videos=3, num_frames=16, height=32, width=48, seed=0, audio=True)
    plain = make_moving_shapes(tmp_path / "plain", num_videos=3, num_frames=16, height=32, width=48, seed=0)
    found = []
    for line, plain_line in zip(csv.read_text().splitlines(), plain.read_text().splitlines()):
        path, label = line.rsplit(maxsplit=1)
        assert path.endswith("_av.mp4")
        wave = decode_audio(path, RATE)
        assert len(wave) == 2 * RATE  # 16 frames at 8 fps
        peak = np.argmax(np.abs(np.fft.rfft(wave))) * RATE / len(wave)
        assert peak == pytest.approx(class_tone_hz(int(label)), abs=1.0)
        found.append(peak)
        # the same pictures as the silent set's (up to x264, whose output can vary within a process)
        dec = PyAVDecoder()
        diff = dec.clip(path, [0, 8, 15]).astype(int) - dec.clip(plain_line.rsplit(maxsplit=1)[0], [0, 8, 15])
        assert np.abs(diff).mean() < 2
    assert len(set(np.round(found))) == 3
    assert class_tone_hz(11) / class_tone_hz(0) == pytest.approx(2 ** (33 / 12))
    assert class_tone(0, 0.5, 8000, np.random.default_rng(0)).shape == (4000,)
