"""Synthetic labelled videos. Two kinds:
- "shapes": a shape moving across a textured background; class = shape x direction (12 classes).
- "pan": a random smooth texture sliding across the frame; class = its direction (4 classes). Every frame alone
  looks alike in every class: only the motion between frames tells the class.

Real encoded files (mp4/H.264 by default), so the demo and tests exercise the same decode path as user data.
With audio=True each video also has a sound: a tone whose pitch encodes the class (AAC, mono), for AV-JEPA.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

SHAPES = ("square", "disc", "triangle")
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))  # (dx, dy): right, left, down, up
NUM_CLASSES = len(SHAPES) * len(DIRECTIONS)
TONE_BASE_HZ = 300.0  # class 0's pitch; the classes spread over 3 octaves above it (up to ~2 kHz)


def _shape_mask(kind: str, size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    if kind == "square":
        return np.ones((size, size), bool)
    if kind == "disc":
        return (yy - c) ** 2 + (xx - c) ** 2 <= (size / 2) ** 2
    return (yy >= (size - 1) - 2 * np.abs(xx - c))  # triangle pointing up


def moving_shape_frames(label: int, num_frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [T, H, W, 3] for class `label`: the shape crosses the frame in its class's direction, all the video
    long (it never bounces, so every clip of the video shows the class's direction)."""
    kind = SHAPES[label // len(DIRECTIONS)]
    dx, dy = DIRECTIONS[label % len(DIRECTIONS)]
    size = max(8, min(height, width) // 4)
    mask = _shape_mask(kind, size)
    color = rng.integers(150, 256, size=3)
    background = rng.integers(0, 90, size=(height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    background = background[:height, :width].astype(np.uint8)
    room_x, room_y = width - size, height - size
    travel = rng.uniform(0.5, 0.95) * (room_x if dx else room_y)  # pixels over the whole video
    # start where the whole path fits: moving right starts near the left, moving left near the right
    x0 = (rng.uniform(0, room_x - travel) if dx > 0 else rng.uniform(travel, room_x)) if dx else rng.uniform(0, room_x)
    y0 = (rng.uniform(0, room_y - travel) if dy > 0 else rng.uniform(travel, room_y)) if dy else rng.uniform(0, room_y)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        step = travel * t / max(1, num_frames - 1)
        x, y = int(round(x0 + dx * step)), int(round(y0 + dy * step))
        frame = background.copy()
        frame[y:y + size, x:x + size][mask] = color
        frames[t] = frame
    return frames


PAN_SPEED = (0.4, 1.0)  # pixels a frame: a random ViT reads faster pans from pixels alone (measured, README)


def _smooth_spectrum(height: int, width: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The 2-D spectrum [3, height, width // 2 + 1] of a random texture: white noise low-passed by a Gaussian of
    `sigma` pixels. Periodic, so a phase ramp shifts it by any fraction of a pixel without edges."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    return np.fft.rfft2(rng.standard_normal((3, height, width))) * kernel


def panning_texture_frames(label: int, num_frames: int, height: int, width: int, rng: np.random.Generator,
                           speed: tuple[float, float] = PAN_SPEED) -> np.ndarray:
    """uint8 [T, H, W, 3] for class `label` of the "pan" kind: a random smooth texture (Gaussian-filtered noise,
    sigma 2.5 px, each channel at mean 128 and std 48) moving in direction DIRECTIONS[label] at a speed drawn from
    U(speed) pixels a frame, sub-pixel exact (a Fourier shift), all the video long."""
    dx, dy = DIRECTIONS[label]
    v = rng.uniform(*speed)
    spectrum = _smooth_spectrum(height, width, 2.5, rng)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    first = np.fft.irfft2(spectrum, s=(height, width))
    mean, std = first.mean(axis=(1, 2), keepdims=True), first.std(axis=(1, 2), keepdims=True)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        # content at (x, y) in frame 0 is at (x + dx v t, y + dy v t) in frame t
        shifted = spectrum * np.exp(-2j * np.pi * v * t * (fx * dx + fy * dy))
        image = (np.fft.irfft2(shifted, s=(height, width)) - mean) / std
        frames[t] = np.clip(128 + 48 * image, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return frames


# kind -> (frames of one video, number of classes, file name prefix)
KINDS = {"shapes": (moving_shape_frames, NUM_CLASSES, "shape"), "pan": (panning_texture_frames, len(DIRECTIONS), "pan")}


def class_tone_hz(label: int) -> float:
    """The pitch of class `label`'s tone: TONE_BASE_HZ * 2 ** (3 label / NUM_CLASSES), a quarter-octave apart."""
    return TONE_BASE_HZ * 2.0 ** (label / NUM_CLASSES * 3)


def class_tone(label: int, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [round(seconds * rate)]: class `label`'s tone (amplitude 0.3, random phase) with a little noise."""
    t = np.arange(int(round(seconds * rate))) / rate
    tone = 0.3 * np.sin(2 * np.pi * class_tone_hz(label) * t + rng.uniform(0, 2 * np.pi))
    return (tone + rng.normal(0, 0.01, len(t))).astype(np.float32)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, codec: str = "libx264",
                pix_fmt: str = "yuv420p", gop: int = 16, options: dict | None = None, audio: np.ndarray | None = None,
                audio_rate: int = 16000):
    """Encode uint8 [T, H, W, 3] frames with PyAV; the container follows the file extension. `audio` (float32
    mono [n] in [-1, 1] at audio_rate, sample 0 at the first frame) adds an AAC track (mp4, mov or mkv)."""
    import av

    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.gop_size = gop
        if options:
            stream.options = options
        sound = _add_aac(out, audio_rate) if audio is not None else None
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            _encode_audio(out, sound, audio, audio_rate)


def _add_aac(out, rate: int):
    # FFmpeg's native AAC encoder (bundled with PyAV's wheels, unlike libfdk_aac); mp4 records its priming delay
    # in an edit list, which FFmpeg's demuxer undoes, so decoded sample 0 is the first sample written here
    stream = out.add_stream("aac", rate=rate)
    stream.layout = "mono"
    return stream


def _encode_audio(out, stream, wave: np.ndarray, rate: int):
    import av

    wave = np.asarray(wave, np.float32).reshape(-1)
    step = stream.codec_context.frame_size or 1024
    for i in range(0, len(wave), step):
        frame = av.AudioFrame.from_ndarray(wave[None, i:i + step], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def make_moving_shapes(out_dir: str | Path, num_videos: int = 48, num_frames: int = 48, height: int = 128,
                       width: int = 160, fps: int = 8, seed: int = 0, progress: bool = False, audio: bool = False,
                       audio_rate: int = 16000, kind: str = "shapes", frame_options: dict | None = None) -> Path:
    """Write `num_videos` mp4 files of `kind` (a key of KINDS; classes round-robin; `frame_options`: keyword
    arguments of its frame function, e.g. the pan's `speed`) and `videos.csv` in the official format; returns the
    CSV.
    audio=True: each video also gets its class's tone (`class_tone`) for its whole duration, in files named
    `*_av.mp4` (a folder of silent videos is never taken for one with sound); the frames are the same either way
    (the sound draws from its own generator)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    make_frames, num_classes, prefix = KINDS[kind]
    if audio and kind != "shapes":
        raise ValueError("audio=True: the class tone is defined for the 'shapes' kind only")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    items = range(num_videos)
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="synthetic videos", unit="video")
    for i in items:
        label = i % num_classes
        path = out_dir / f"{prefix}_{i:04d}_c{label:02d}{'_av' if audio else ''}.mp4"
        if not path.exists():
            frames = make_frames(label, num_frames, height, width, rng, **(frame_options or {}))
            sound = class_tone(label, num_frames / fps, audio_rate, np.random.default_rng((seed, i))) if audio else None
            write_video(path, frames, fps=fps, audio=sound, audio_rate=audio_rate)
        lines.append(f"{path.resolve()} {label}\n")
    csv = out_dir / "videos.csv"
    csv.write_text("".join(lines))
    return csv


def split_list(csv: str | Path, val_fraction: float) -> tuple[Path, Path]:
    """train.csv and val.csv beside `csv`: per class, the last round(n * val_fraction) videos (at least one of a
    class with two or more) go to val, so both splits hold every class."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    csv = Path(csv)
    lines = csv.read_text().splitlines(keepends=True)
    by_class: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        by_class.setdefault(line.rsplit(maxsplit=1)[-1], []).append(i)
    val = {i for rows in by_class.values() if len(rows) > 1
           for i in rows[len(rows) - max(1, round(len(rows) * val_fraction)):]}
    paths = csv.with_name("train.csv"), csv.with_name("val.csv")
    for path, keep in zip(paths, (lambda i: i not in val, lambda i: i in val)):
        path.write_text("".join(line for i, line in enumerate(lines) if keep(i)))
    return paths
