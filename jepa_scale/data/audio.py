"""The sound of a video as float32 mono samples, on the video's clock.

Time zero is the video's first frame (as in `pyav_decoder`, frame i is at i / fps), so the samples of a clip's
window [start s, end s) are `round(start * rate)` onwards. The audio stream's own start time is honoured: a track
that starts later than the video is preceded by silence, one that starts earlier is cut. AAC's encoder priming
(1024 samples) is removed by FFmpeg itself when the container says so (mp4's edit list; measured: a 48 kHz AAC
track in mp4 decodes within 0.05 ms of its source); a raw ADTS stream carries no such note and stays late by it.
A stereo (or wider) track is down-mixed by FFmpeg's rematrixing: mono = (L + R) / sqrt(2) (swresample's -3 dB
centre mix, without normalisation for float output; `tests/test_audio.py` pins it).

Shards made with `make_shards --audio` hold each sample's track as a `wav` member (16-bit PCM mono, the video's
duration); `read_wav_window` reads only the bytes of a window from inside the tar.
"""
from __future__ import annotations

import io
import os
import struct
import wave as wavelib

import numpy as np

try:
    import av
except ImportError as e:  # pragma: no cover - av is a core dependency
    raise ImportError("PyAV is required for audio decoding: pip install av") from e

MISSING = ("fail", "silence")
NO_AUDIO_TRACK = "no audio track"
_STOP_MARGIN_S = 0.1  # decode this far past a window's end before stopping (a frame straddles the end)


class AudioError(Exception):
    """This record cannot give the sound of a clip; `reason` says why (counted like VideoError, never fatal)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _open(source):
    """source: a file path, or the encoded bytes of a media file (a sample read from a shard)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    elif not os.path.exists(source):
        raise AudioError("missing file")
    try:
        return av.open(source, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise AudioError(f"not a readable media file ({type(e).__name__}: {e})") from None


def _video_start_s(container) -> float:
    """The time of the video's first frame (its stream's start time), 0 for an audio-only file."""
    if not container.streams.video:
        return 0.0
    v = container.streams.video[0]
    return float(v.start_time * v.time_base) if v.start_time is not None and v.time_base else 0.0


def _audio_frames(container, stream, stop_s: float | None):
    """Decoded frames of the audio stream up to the first one past `stop_s`; corrupt packets are skipped."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            continue
        for frame in frames:
            yield frame
            if stop_s is not None and frame.time is not None and frame.time > stop_s:
                return


def _decode_track(container, stream, sample_rate: int, stop_s: float | None):
    """(mono float32 samples at sample_rate, time in s of the first one)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks, first_s = [], None
    for frame in _audio_frames(container, stream, stop_s):
        if first_s is None:
            first_s = float(frame.time) if frame.time is not None else 0.0
        chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(frame)]
    chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]  # what the resampler still holds
    if first_s is None:
        raise AudioError("no decodable audio frames")
    return np.concatenate(chunks).astype(np.float32, copy=False), first_s


def _decode(source, sample_rate: int, stop_s: float | None = None) -> np.ndarray:
    container = _open(source)
    with container:
        if not container.streams.audio:
            raise AudioError(NO_AUDIO_TRACK)
        stream = container.streams.audio[0]
        wave, first_s = _decode_track(container, stream, sample_rate, stop_s)
        lead = int(round((first_s - _video_start_s(container)) * sample_rate))
        if stream.duration and stream.time_base:
            # the encoder pads its last frame: keep what the stream declares
            wave = wave[:int(round(float(stream.duration * stream.time_base) * sample_rate))]
    if lead > 0:  # the track starts after the first frame
        return np.concatenate([np.zeros(lead, np.float32), wave])
    return wave[-lead:]


def decode_audio(source, sample_rate: int) -> np.ndarray:
    """The whole first audio track of a media file (path or encoded bytes) as float32 mono [n] at `sample_rate`,
    sample k at k / sample_rate seconds after the video's first frame. AudioError("no audio track") without one."""
    return _decode(source, sample_rate)


def clip_window(wave: np.ndarray, sample_rate: int, start_s: float, end_s: float) -> np.ndarray:
    """Exactly round((end_s - start_s) * rate) samples from round(start_s * rate); zeros where `wave` has none."""
    n = max(0, int(round((end_s - start_s) * sample_rate)))
    start = int(round(start_s * sample_rate))
    out = np.zeros(n, np.float32)
    lo, hi = max(start, 0), min(start + n, len(wave))
    if hi > lo:
        out[lo - start:hi - start] = wave[lo:hi]
    return out


def encode_wav(wave: np.ndarray, sample_rate: int) -> bytes:
    """A WAV file (16-bit PCM mono) of float samples in [-1, 1] (clipped): x * 32768, as FFmpeg's flt -> s16."""
    pcm = np.clip(np.rint(np.asarray(wave, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wavelib.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _wav_header(f, offset: int, size: int, where: str) -> tuple[int, int, int]:
    """(sample rate, byte offset of the samples, number of samples) of the 16-bit mono PCM WAV at `offset`."""
    f.seek(offset)
    riff = f.read(12)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise AudioError(f"{where}: not a WAV member")
    pos, rate = offset + 12, None
    while pos + 8 <= offset + size:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            break  # the file ends before the member says it does
        chunk, length = struct.unpack("<4sI", head)
        if chunk == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", f.read(16))
            if (tag, channels, bits) != (1, 1, 16):
                raise AudioError(f"{where}: WAV is not 16-bit PCM mono (format {tag}, {channels} ch, {bits} bit)")
        elif chunk == b"data":
            if rate is None:
                raise AudioError(f"{where}: WAV data before its fmt chunk")
            return rate, pos + 8, min(length, offset + size - pos - 8) // 2
        pos += 8 + length + (length & 1)  # chunks are padded to even sizes
    raise AudioError(f"{where}: WAV without a data chunk")


def _read_samples(f, data_at: int, count: int, first: int, n: int) -> np.ndarray:
    """Samples [first, first + n) of the track (zeros outside [0, count)), reading only those bytes."""
    out = np.zeros(n, np.float32)
    lo, hi = max(first, 0), min(first + n, count)
    if hi > lo:
        f.seek(data_at + 2 * lo)
        out[lo - first:hi - first] = np.frombuffer(f.read(2 * (hi - lo)), "<i2") / np.float32(32768.0)
    return out


def read_wav_window(path: str, start_s: float, end_s: float, sample_rate: int, offset: int = 0,
                    size: int | None = None) -> np.ndarray:
    """clip_window of the WAV stored at bytes [offset, offset + size) of `path` (a shard tar, or a .wav file with
    offset 0), as float32 at `sample_rate`. Reads the header and the window's bytes only. A WAV at another rate is
    resampled by FFmpeg (its window read with a margin, so the filter has context at both ends)."""
    where = f"{path}@{offset}"
    with open(path, "rb") as f:
        if size is None:
            size = os.fstat(f.fileno()).st_size - offset
        rate, data_at, count = _wav_header(f, offset, size, where)
        if rate == sample_rate:
            return _read_samples(f, data_at, count, int(round(start_s * rate)), _length(start_s, end_s, rate))
        margin = 0.05
        first = int(round((start_s - margin) * rate))
        raw = _read_samples(f, data_at, count, first, _length(start_s - margin, end_s + margin, rate))
    wave = resample(raw, rate, sample_rate)
    return clip_window(wave, sample_rate, start_s - first / rate, end_s - first / rate)


def _length(start_s: float, end_s: float, rate: int) -> int:
    return max(0, int(round((end_s - start_s) * rate)))


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """float32 mono [n] at from_rate -> float32 [~n * to_rate / from_rate] at to_rate (FFmpeg's swresample)."""
    if from_rate == to_rate or not len(wave):
        return np.asarray(wave, np.float32)
    frame = av.AudioFrame.from_ndarray(np.asarray(wave, np.float32)[None], format="flt", layout="mono")
    frame.sample_rate, frame.pts = from_rate, 0
    r = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    out = [o.to_ndarray().reshape(-1) for o in r.resample(frame)] + [o.to_ndarray().reshape(-1)
                                                                     for o in r.resample(None)]
    return np.concatenate(out).astype(np.float32, copy=False)


def load_clip_audio(rec, start_s: float, end_s: float, sample_rate: int, missing: str = "fail") -> np.ndarray:
    """float32 mono [round((end_s - start_s) * sample_rate)]: the sound of [start_s, end_s) of `rec` (a
    VideoRecord) on its video's clock. A shard record reads its `wav` member; a file is decoded (nothing is cached
    across calls). A file without an audio track gives zeros with missing="silence", AudioError with "fail".
    A shard sample without a wav member always raises: its shards were made without --audio, which silence
    would hide for the whole dataset."""
    if missing not in MISSING:
        raise ValueError(f"missing={missing!r}: must be one of {', '.join(MISSING)}")
    if rec.offset >= 0:
        if rec.audio_offset < 0:
            raise AudioError(f"no wav member in {rec.source}: the shards were made without make_shards --audio "
                             f"(remake them with --audio, or train without audio)")
        return read_wav_window(rec.path, start_s, end_s, sample_rate, rec.audio_offset, rec.audio_size)
    try:
        wave = _decode(rec.path, sample_rate, stop_s=end_s + _STOP_MARGIN_S)
    except AudioError as e:
        if e.reason == NO_AUDIO_TRACK and missing == "silence":
            return np.zeros(_length(start_s, end_s, sample_rate), np.float32)
        raise
    return clip_window(wave, sample_rate, start_s, end_s)
