"""The synthetic "pan" videos: class = direction of a texture's motion, told by motion alone."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jepa_scale.data.synthetic import DIRECTIONS, KINDS, make_moving_shapes, panning_texture_frames

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("label", range(len(DIRECTIONS)))
def test_pan_moves_the_texture_in_the_class_direction(label):
    dx, dy = DIRECTIONS[label]
    frames = panning_texture_frames(label, 4, 40, 48, np.random.default_rng(label), speed=(1.0, 1.0)).astype(int)
    for t in range(1, 4):  # one pixel a frame, periodic: frame t is frame 0 rolled by t pixels
        rolled = np.roll(frames[0], shift=(dy * t, dx * t), axis=(0, 1))
        assert np.abs(frames[t] - rolled).max() <= 1  # uint8 rounding of the inverse FFT
        wrong = np.roll(frames[0], shift=(-dy * t, -dx * t), axis=(0, 1))
        assert np.abs(frames[t] - wrong).mean() > 10  # the other way round is a different picture


def test_pan_sub_pixel_shift_lies_between_whole_pixels():
    frames = panning_texture_frames(0, 3, 32, 64, np.random.default_rng(0), speed=(0.5, 0.5)).astype(float)
    # half a pixel a frame: frame 2 is frame 0 moved one pixel; frame 1 is between them, nearer both than either
    assert np.abs(frames[2] - np.roll(frames[0], 1, axis=1)).max() <= 1
    between = np.abs(frames[1] - (frames[0] + frames[2]) / 2).mean()
    assert between < np.abs(frames[1] - frames[0]).mean() / 2


def test_pan_frames_look_alike_in_every_class():
    stats = []
    for label in range(len(DIRECTIONS)):
        frames = [panning_texture_frames(label, 2, 64, 80, np.random.default_rng((label, i))) for i in range(6)]
        first = np.stack([f[0] for f in frames]).astype(float)
        stats.append((first.mean(), first.std()))
    means, stds = np.array(stats).T
    assert np.all(np.abs(means - 128) < 3) and np.all(np.abs(stds - 48) < 4)


def test_make_videos_of_the_pan_kind(tmp_path):
    csv = make_moving_shapes(tmp_path, num_videos=5, num_frames=8, height=32, width=48, kind="pan",
                             frame_options={"speed": (0.5, 0.6)})
    rows = [line.split() for line in csv.read_text().splitlines()]
    assert [int(label) for _, label in rows] == [0, 1, 2, 3, 0]  # 4 classes, round-robin
    assert all(Path(p).name.startswith("pan_") for p, _ in rows)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_moving_shapes(tmp_path, num_videos=1, kind="spin")
    with pytest.raises(ValueError, match="'shapes' kind only"):
        make_moving_shapes(tmp_path, num_videos=1, kind="pan", audio=True)
    assert KINDS["pan"][1] == len(DIRECTIONS)


@pytest.mark.parametrize("args, message", [
    (["--kind", "pan", "--audio"], "--audio: the class tone is defined for --kind shapes only"),
    (["--pan-speed", "0.1", "0.2"], "--pan-speed is for --kind pan"),
    (["--kind", "pan", "--pan-speed", "1", "0.5"], "need 0 <= LO <= HI"),
])
def test_cli_refuses_options_that_do_not_fit_the_kind(tmp_path, args, message):
    run = subprocess.run([sys.executable, str(ROOT / "data_tools/make_synthetic_videos.py"), "--out",
                          str(tmp_path), "--num-videos", "1", *args], capture_output=True, text=True)
    assert run.returncode == 2 and message in run.stderr
    assert not list(tmp_path.iterdir())
