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
    # h264/hevc: B-frames between P-frames, never used as references (b-pyramid none), so the loader skips the
    # ones a clip does not show without decoding them (exact; 0: none, decode order = display order)
    bframes: int = 0
    # store every K-th frame only (K > 1: fewer frames to decode and store). The loader draws the official clip on
    # the original frame count and takes the stored frame nearest each drawn one (see sampling.snap_to_stored):
    # a frame step that is not a multiple of K is refused
    keep_every: int = 1
    upscale: bool = True  # False: --short-side never enlarges a smaller video (no pixels to gain, more to decode)
    copy: bool = False  # keep the original bytes (after checking they decode)
    min_frames: int = 16  # fewer decodable frames than this: a failure ("too short")
    audio: bool = False  # also keep the sound: a `wav` member per sample (16-bit mono, the video's duration)
    audio_rate: int = 16000  # its sample rate (Hz)
    audio_missing: str = "fail"  # a video without an audio track: fail (a failure) | silence (a silent wav)


AUDIO_MISSING = ("fail", "silence")
# options added after folders were made: at these values a run's state leaves them out (see make.run_state), so an
# earlier run's folder continues
LEGACY_VALUES = {"bframes": 0, "keep_every": 1, "upscale": True}
ENCODERS = {"h264": ("libx264", ".mp4", "mp4"), "hevc": ("libx265", ".mp4", "mp4"), "vp9": ("libvpx-vp9", ".mp4", "mp4")}


def _target_size(w: int, h: int, short_side: int | None, upscale: bool = True) -> tuple[int, int]:
    if not short_side or (not upscale and min(w, h) <= short_side):
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
        kept = frames[::opts.keep_every]
        data, meta = _encode(kept, fps / opts.keep_every, opts)
        meta["keyframes"] = keyframe_indices(data)
        if opts.keep_every > 1:  # what the loader needs to draw clips on the original frames (sampling.py)
            meta.update(keep_every=opts.keep_every, source_frames=len(frames), source_fps=fps)
    frames_made = meta.get("source_frames", meta["num_frames"])  # with keep_every, the video's own length counts
    if frames_made < opts.min_frames:
        raise VideoError(f"too short ({frames_made} frames < {opts.min_frames})")
    meta["duration"] = meta["num_frames"] / meta["fps"] if meta["fps"] else 0.0
    return data, meta


def _encode(frames, fps: float, opts: TranscodeOptions) -> tuple[bytes, dict]:
    codec, ext, fmt = ENCODERS[opts.codec]
    w, h = _target_size(frames[0].width, frames[0].height, opts.short_side, opts.upscale)
    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
    with av.open(buf, "w", format=fmt) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt, s.gop_size = w, h, "yuv420p", opts.gop
        s.options = _codec_options(opts)
        for i, f in enumerate(frames):
            # full-range (JPEG) sources must be mapped to the limited range that yuv420p players assume
            full = f.format.name.startswith("yuvj") or getattr(f, "color_range", 0) == 2
            frame = f.reformat(width=w, height=h, format="yuv420p",
                               src_color_range="JPEG" if full else None, dst_color_range="MPEG" if full else None)
            frame.pts, frame.time_base = i, 1 / rate
            frame.pict_type = 0  # the source's I-frames would force keyframes (PyAV passes the type on)
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return buf.getvalue(), dict(fps=float(rate), num_frames=len(frames), width=w, height=h, codec=opts.codec, ext=ext)


def _codec_options(opts: TranscodeOptions) -> dict:
    options = {"crf": str(opts.crf)}
    if opts.codec == "vp9":
        return {**options, "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
    options["bf"] = str(opts.bframes)  # 0: decode order = display order
    if opts.fastdecode:
        options["tune"] = "fastdecode"
    if opts.codec == "h264" and opts.bframes:
        # fixed B-frame runs that nothing references: the decoder may skip every one a clip does not show
        options["x264-params"] = "b-pyramid=none:b-adapt=0"
    if opts.codec == "hevc":
        bf = f":bframes={opts.bframes}:b-pyramid=0:b-adapt=0" if opts.bframes else ""
        options["x265-params"] = f"log-level=none:keyint={opts.gop}:min-keyint={opts.gop}{bf}"
    return options


def keyframe_indices(data: bytes) -> list[int]:
    """Display-order indices of the keyframes of encoded `data`: the loader skips the groups of pictures a clip has
    no frame in (x264/x265/libvpx write closed GOPs, so no frame before a keyframe is needed after it)."""
    container = av.open(io.BytesIO(data))
    with container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0]) if p.pts is not None]
    order = sorted(pts for pts, _ in packets)
    rank = {pts: i for i, pts in enumerate(order)}
    return sorted(rank[pts] for pts, key in packets if key)


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
