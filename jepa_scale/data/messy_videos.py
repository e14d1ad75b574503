"""A corpus of real-world-shaped video files, good and broken, for tests and benchmarks.

Every frame encodes its own index (left half: 8 + 8 * (t % 30), right half: 8 + 8 * (t // 30)), so a decoder's
output can be checked frame by frame even after lossy coding or 5-bit colour.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

H, W = 64, 80


def index_frame(t: int, height: int = H, width: int = W) -> np.ndarray:
    f = np.empty((height, width, 3), np.uint8)
    f[:, : width // 2] = 8 + 8 * (t % 30)
    f[:, width // 2:] = 8 + 8 * (t // 30)
    return f


def frame_index(frame: np.ndarray) -> int:
    """Inverse of index_frame, robust to coding noise (reads the interior of each half)."""
    h, w = frame.shape[:2]
    lo = frame[h // 4: 3 * h // 4, w // 8: 3 * w // 8].mean()
    hi = frame[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8].mean()
    return int(round((lo - 8) / 8)) + 30 * int(round((hi - 8) / 8))


def write_index_video(path, codec: str, pix_fmt: str, num_frames: int = 40, fps: int = 10, gop: int = 12,
                      vfr: bool = False, garbage_audio: bool = False, options: dict | None = None):
    """Encode index frames. vfr: irregular timestamps; garbage_audio: an mp2 stream of random-byte packets."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt, s.gop_size = W, H, pix_fmt, gop
        if options:
            s.options = options
        if vfr:
            s.codec_context.time_base = Fraction(1, 1000)
        audio = None
        if garbage_audio:
            audio = out.add_stream("mp2", rate=44100)
            audio.layout = "stereo"
        rng, ms = np.random.default_rng(0), 0
        for t in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(t), format="rgb24")
            if vfr:
                frame.pts, frame.time_base = ms, Fraction(1, 1000)
                ms += 50 if t % 3 else 170
            for p in s.encode(frame):
                out.mux(p)
            if audio is not None and t % 2 == 0:
                p = av.Packet(rng.bytes(400))
                p.stream, p.pts, p.dts, p.time_base = audio, t * 2205, t * 2205, Fraction(1, 44100)
                out.mux(p)
        for p in s.encode():
            out.mux(p)


# name: (file name, codec, pixel format, extra kwargs)
GOOD = {
    "h264": ("h264.mp4", "libx264", "yuv420p", {}),
    "h264_yuv444p": ("h264_444.mp4", "libx264", "yuv444p", {}),
    "hevc": ("hevc.mp4", "libx265", "yuv420p", {"options": {"x265-params": "log-level=none"}}),
    "mpeg4_avi": ("mpeg4.avi", "mpeg4", "yuv420p", {}),
    "mjpeg_avi": ("mjpeg.avi", "mjpeg", "yuvj420p", {}),
    "vp8_webm": ("vp8.webm", "libvpx", "yuv420p", {}),
    "vp9_webm": ("vp9.webm", "libvpx-vp9", "yuv420p", {}),
    "cinepak_avi": ("cinepak.avi", "cinepak", "rgb24", {}),
    "rgb555_avi": ("rgb555.avi", "rawvideo", "rgb555le", {}),
    "ffv1_mkv": ("ffv1.mkv", "ffv1", "bgr0", {}),
    "vfr_mp4": ("vfr.mp4", "libx264", "yuv420p", {"vfr": True, "num_frames": 90}),
    "garbage_audio_mkv": ("garbage_audio.mkv", "libx264", "yuv420p", {"garbage_audio": True}),
    "long_h264": ("long.mp4", "libx264", "yuv420p", {"num_frames": 150, "gop": 16}),
}


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    path: Path
    num_frames: int  # frames that really decode (0 for broken files)
    broken_reason: str | None  # a substring of the reason a loader must give, None when decodable
    shard_reason: str | None = None  # what make_shards must say when it is stricter than training (corrupt data)

    @property
    def shard_failure(self) -> str | None:
        return self.shard_reason or self.broken_reason


def make_corpus(out_dir: str | Path) -> list[CorpusEntry]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, (fname, codec, pix, kw) in GOOD.items():
        path = out / fname
        if not path.exists():
            write_index_video(path, codec, pix, **kw)
        entries.append(CorpusEntry(name, path, kw.get("num_frames", 40), None))
    # decodes fine but has too few frames for a clip (training repeats its last frame; make_shards refuses it)
    write_index_video(out / "short.mp4", "libx264", "yuv420p", num_frames=6)
    entries.append(CorpusEntry("too_short", out / "short.mp4", 6, None, "too short"))
    # a header that overstates the length: an mkv cut short keeps its full duration in the header
    full = out / "tmp_full.mkv"
    write_index_video(full, "libx264", "yuv420p", num_frames=150, gop=10)
    data = full.read_bytes()
    (out / "truncated.mkv").write_bytes(data[: int(len(data) * 0.5)])
    full.unlink()
    entries.append(CorpusEntry("truncated_mkv", out / "truncated.mkv", -1, None, "truncated"))
    # random bytes over the middle of the file: packets that fail to decode
    write_index_video(out / "tmp_c.mkv", "libx264", "yuv420p", num_frames=60, gop=10)
    data = bytearray((out / "tmp_c.mkv").read_bytes())
    (out / "tmp_c.mkv").unlink()
    rng = np.random.default_rng(0)
    for off in range(int(len(data) * 0.4), int(len(data) * 0.6), 97):
        data[off:off + 8] = rng.bytes(8)
    (out / "corrupt_middle.mkv").write_bytes(bytes(data))
    entries.append(CorpusEntry("corrupt_middle", out / "corrupt_middle.mkv", -1, None, "decode error mid-file"))
    # broken beyond use
    write_index_video(out / "tmp.mp4", "libx264", "yuv420p", num_frames=60)
    mp4 = (out / "tmp.mp4").read_bytes()
    (out / "tmp.mp4").unlink()
    (out / "truncated_moov.mp4").write_bytes(mp4[: len(mp4) // 2])  # moov is at the end: unreadable
    (out / "zero.mp4").write_bytes(b"")
    (out / "tiny.mp4").write_bytes(b"\x00" * 100)
    (out / "not_a_video.mp4").write_bytes(b"this is a text file, not a video\n" * 100)
    _write_audio_only(out / "audio_only.mka")
    entries += [
        CorpusEntry("truncated_mp4", out / "truncated_moov.mp4", 0, "not a readable video"),
        CorpusEntry("zero_bytes", out / "zero.mp4", 0, "file too small"),
        CorpusEntry("tiny", out / "tiny.mp4", 0, "file too small"),
        CorpusEntry("not_a_video", out / "not_a_video.mp4", 0, "not a readable video"),
        CorpusEntry("audio_only", out / "audio_only.mka", 0, "no video stream"),
        CorpusEntry("missing", out / "missing.mp4", 0, "missing file"),
    ]
    return entries


def _write_audio_only(path: Path):
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mp2", rate=44100)
        s.layout = "stereo"
        rng = np.random.default_rng(1)
        for i in range(40):
            frame = av.AudioFrame.from_ndarray((rng.standard_normal((1, 2 * 1152)) * 1000).astype(np.int16),
                                               format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 44100, i * 1152
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def write_csv(entries: list[CorpusEntry], path: str | Path, label: int = 0) -> Path:
    Path(path).write_text("".join(f"{e.path} {label}\n" for e in entries))
    return Path(path)


if __name__ == "__main__":  # pragma: no cover
    import sys
    for e in make_corpus(sys.argv[1] if len(sys.argv) > 1 else "messy_videos"):
        print(e.name, e.path, os.path.getsize(e.path) if e.path.exists() else "-")
