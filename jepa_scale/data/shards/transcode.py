"""One source video -> the encoded bytes that go into a shard, plus its metadata; or a reason it cannot."""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from jepa_scale.data.audio import NO_AUDIO_TRACK, AudioError, clip_window, decode_audio, encode_wav
from jepa_scale.data.pyav_decoder import VideoError, _frames, _info, _open


@dataclass(frozen=True)
class TranscodeOptions:
    short_side: int | None = None  # resize so the short side is this (None: keep)
    fps: float | None = None  # resample to this frame rate by timestamp (None: keep every frame)
    gop: int = 16  # keyframe interval: short GOPs make seeks cheap
    codec: str = "h264"  # h264 | hevc | vp9
    crf: int = 23
    fastdecode: bool = True  # x264/x265 `tune=fastdecode`: cheaper decoding for a few % more bytes
    copy: bool = False  # keep the original bytes (after checking they decode)
    min_frames: int = 16  # fewer decodable frames than this: a failure ("too short")
    audio: bool = False  # also keep the sound: a `wav` member per sample (16-bit mono, the video's duration)
    audio_rate: int = 16000  # its sample rate (Hz)
    audio_missing: str = "fail"  # a video without an audio track: fail (a failure) | silence (a silent wav)


AUDIO_MISSING = ("fail", "silence")
ENCODERS = {"h264": ("libx264", ".mp4", "mp4"), "hevc": ("libx265", ".mp4", "mp4"), "vp9": ("libvpx-vp9", ".mp4", "mp4")}


def _target_size(w: int, h: int, short_side: int | None) -> tuple[int, int]:
    if not short_side:
        return w - w % 2, h - h % 2
    scale = short_side / min(w, h)
    # even sizes: 4:2:0 chroma needs them
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


def _decode_all(path: str) -> tuple[list, float, float]:
    """All frames (as av.VideoFrame), the stream's fps and the frames' times in seconds; strict about errors."""
    container, stream = _open(path)
    errors: list[str] = []
    with container:
        info = _info(container, stream)
        frames = list(_frames(container, stream, errors))
    if errors:
        raise VideoError(f"decode error mid-file after {len(frames)} frames ({errors[0]})")
    if not frames:
        raise VideoError("no decodable video frames")
    if info.num_frames and len(frames) < 0.9 * info.num_frames:
        raise VideoError(f"truncated: decoded {len(frames)} of the {info.num_frames} frames the header declares")
    t0 = frames[0].time or 0.0
    times = [(f.time if f.time is not None else i / (info.fps or 1)) - t0 for i, f in enumerate(frames)]
    return frames, info.fps, times


def _resample(frames, times, src_fps: float, fps: float | None):
    if not fps or not src_fps:
        return frames, src_fps
    duration = times[-1] + 1.0 / src_fps
    wanted = np.arange(0, duration, 1.0 / fps)
    picks = np.searchsorted(np.asarray(times), wanted + 1e-6, side="right") - 1
    return [frames[max(0, i)] for i in picks], fps


def transcode(path: str, opts: TranscodeOptions) -> tuple[bytes, dict]:
    """-> (encoded bytes, metadata with fps, num_frames, duration, width, height, codec, ext). Raises VideoError."""
    frames, src_fps, times = _decode_all(path)
    if opts.copy:
        data = open(path, "rb").read()
        f0 = frames[0]
        ext = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ".mp4"
        meta = dict(fps=src_fps, num_frames=len(frames), width=f0.width, height=f0.height, codec="copy", ext=ext)
    else:
        frames, fps = _resample(frames, times, src_fps, opts.fps)
        data, meta = _encode(frames, fps, opts)
    if meta["num_frames"] < opts.min_frames:
        raise VideoError(f"too short ({meta['num_frames']} frames < {opts.min_frames})")
    meta["duration"] = meta["num_frames"] / meta["fps"] if meta["fps"] else 0.0
    return data, meta


def _encode(frames, fps: float, opts: TranscodeOptions) -> tuple[bytes, dict]:
    codec, ext, fmt = ENCODERS[opts.codec]
    w, h = _target_size(frames[0].width, frames[0].height, opts.short_side)
    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
    with av.open(buf, "w", format=fmt) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt, s.gop_size = w, h, "yuv420p", opts.gop
        options = {"crf": str(opts.crf)}
        if opts.codec in ("h264", "hevc"):
            options["bf"] = "0"  # no B-frames: decode order = display order, cheaper seeks
            if opts.fastdecode:
                options["tune"] = "fastdecode"
            if opts.codec == "hevc":
                options["x265-params"] = f"log-level=none:keyint={opts.gop}:min-keyint={opts.gop}"
        else:
            options.update({"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"})
        s.options = options
        for i, f in enumerate(frames):
            # full-range (JPEG) sources must be mapped to the limited range that yuv420p players assume
            full = f.format.name.startswith("yuvj") or getattr(f, "color_range", 0) == 2
            frame = f.reformat(width=w, height=h, format="yuv420p",
                               src_color_range="JPEG" if full else None, dst_color_range="MPEG" if full else None)
            frame.pts, frame.time_base = i, 1 / rate
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return buf.getvalue(), dict(fps=float(rate), num_frames=len(frames), width=w, height=h, codec=opts.codec, ext=ext)


def audio_member(path: str, meta: dict, opts: TranscodeOptions) -> tuple[bytes, bool]:
    """(WAV bytes, silent?) of the sound of `path` for the sample `meta` describes: mono 16-bit at audio_rate,
    cut or zero-padded to the sample's duration, sample k at k / rate after its first frame, so frame i (at
    i / fps) and sample round(i / fps * rate) are the same moment. Without an audio track: VideoError("no audio
    track") with audio_missing "fail", a silent WAV with "silence"."""
    rate = opts.audio_rate
    try:
        wave, silent = decode_audio(path, rate), False
    except AudioError as e:
        if e.reason != NO_AUDIO_TRACK or opts.audio_missing != "silence":
            raise VideoError(e.reason if e.reason == NO_AUDIO_TRACK else f"audio: {e.reason}") from None
        wave, silent = np.zeros(0, np.float32), True
    return encode_wav(clip_window(wave, rate, 0.0, meta["duration"]), rate), silent
