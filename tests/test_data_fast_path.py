"""The fast shard decode path: packet skipping is exact, --keep-every's clip distribution is what sampling.py says,
its metadata is recorded and a frame step it cannot serve is refused naming the key."""
import io
import json
import math
import subprocess
import sys

import av
import numpy as np
import pytest

from jepa_scale.config import load_config
from jepa_scale.data.csv_source import DataError, VideoRecord
from jepa_scale.data.messy_videos import frame_index, write_index_video
from jepa_scale.data.pyav_decoder import PyAVDecoder, _rgb
from jepa_scale.data.sampling import clip_indices, snap_to_stored
from jepa_scale.data.shards.make import make_shards, run_state
from jepa_scale.data.shards.source import read_shard_datasets
from jepa_scale.data.shards.transcode import TranscodeOptions, _target_size, keyframe_indices
from jepa_scale.data.synthetic import moving_shape_frames, write_video
from jepa_scale.data.video_batches import ClipLoader
from tests.conftest import ROOT

FRAMES, FPS = 120, 30


@pytest.fixture(scope="module")
def video_csv(tmp_path_factory):
    """Two noisy camera-like videos (the noise makes P- and B-frames carry real data), 120 frames at 30 fps."""
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(2):
        frames = moving_shape_frames(i, FRAMES, 48, 64, rng).astype(np.int16)
        frames = np.clip(frames + rng.integers(-8, 9, frames.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        write_video(folder / f"v{i}.mp4", frames, fps=FPS, gop=250)
        lines.append(f"{folder / f'v{i}.mp4'} {i}\n")
    (folder / "v.csv").write_text("".join(lines))
    return folder / "v.csv"


def _shards(video_csv, tmp_path_factory, **opts):
    out = tmp_path_factory.mktemp("shards")
    make_shards([str(video_csv)], str(out), TranscodeOptions(min_frames=8, **opts), progress=False)
    (records,), _ = read_shard_datasets([out])
    return out, records


@pytest.fixture(scope="module", params=[dict(gop=4), dict(gop=8, bframes=3), dict(gop=16, bframes=2),
                                        dict(gop=32, bframes=15)],
                ids=["gop4", "gop8_bf3", "gop16_bf2", "gop32_bf15"])  # the last: make_shards' recommended one
def shard(request, video_csv, tmp_path_factory):
    return _shards(video_csv, tmp_path_factory, **request.param)


@pytest.fixture(scope="module")
def keep2(video_csv, tmp_path_factory):
    return _shards(video_csv, tmp_path_factory, gop=8, bframes=2, keep_every=2)


def _all_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        return [_rgb(f) for f in c.decode(video=0)]


def test_skipping_packets_decodes_exactly_the_frames_of_a_full_decode(shard):
    _, records = shard
    rng = np.random.default_rng(0)
    for rec in records:
        data = rec.read_bytes()
        frames = _all_frames(data)
        assert rec.keyframes and rec.keyframes[0] == 0 and len(frames) == rec.num_frames
        for _ in range(8):
            idx = np.sort(rng.choice(rec.num_frames, 6, replace=False))
            got = PyAVDecoder().clip(data, idx, keyframes=rec.keyframes)
            assert all((g == frames[i]).all() for g, i in zip(got, idx))


def test_wrong_keyframes_fall_back_to_a_plain_decode(shard):
    _, records = shard
    data = records[0].read_bytes()
    frames = _all_frames(data)
    idx = np.array([5, 30, 31, 90])
    got = PyAVDecoder().clip(data, idx, keyframes=(0, 3, 7, 11, 50))  # not where the keyframes are
    assert all((g == frames[i]).all() for g, i in zip(got, idx))


def test_recorded_keyframes_are_the_streams_and_gops_are_fixed_by_gop(shard):
    _, records = shard
    for rec in records:
        assert list(rec.keyframes) == keyframe_indices(rec.read_bytes())
        # the source's own keyframes do not force extra ones (only x264's scene cuts could add some)
        assert len(rec.keyframes) <= math.ceil(rec.num_frames / 4) + 2


class Recorder(PyAVDecoder):
    def __init__(self):
        super().__init__()
        self.calls = []

    def clip(self, path, indices, keyframes=()):
        self.calls.append(np.asarray(indices))
        return super().clip(path, indices, keyframes)


def _loader(step: int = 4, fpc: int = 8, decoder=None):
    cfg = load_config(raw={"data": {"datasets": ["x.csv"], "num_frames": fpc, "sampling_rate": step,
                                    "crop_size": 32}})
    return ClipLoader(cfg.data, cfg.data_aug, decoder)


def test_default_shards_sample_exactly_the_official_clips(shard):
    _, records = shard
    rec = records[0]
    dec = Recorder()
    loader = _loader(decoder=dec)
    for seed in range(5):
        loader(rec, np.random.default_rng(seed))
        (want,) = clip_indices(rec.num_frames, 8, 4, 1, np.random.default_rng(seed))
        assert (dec.calls[-1] == want).all()


def test_keep_every_metadata_is_recorded(keep2):
    out, records = keep2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["keep_every"] == 2
    side = json.loads((out / manifest["shards"][0]).with_suffix(".json").read_text())
    for s in side["samples"]:
        assert (s["keep_every"], s["source_frames"], s["num_frames"]) == (2, FRAMES, FRAMES // 2)
        assert s["source_fps"] == pytest.approx(FPS) and s["fps"] == pytest.approx(FPS / 2)
    assert all(r.keep_every == 2 and r.source_frames == FRAMES for r in records)


def test_keep_every_stores_every_kth_original_frame(tmp_path):
    """Frames that encode their own index: stored frame j of a --keep-every 3 shard is original frame 3j."""
    write_index_video(tmp_path / "idx.mp4", "libx264", "yuv420p", num_frames=100, fps=30)
    (tmp_path / "idx.csv").write_text(f"{tmp_path / 'idx.mp4'} 0\n")
    make_shards([str(tmp_path / "idx.csv")], str(tmp_path / "s"), TranscodeOptions(min_frames=8, keep_every=3,
                                                                                   bframes=2), progress=False)
    (records,), _ = read_shard_datasets([tmp_path / "s"])
    stored = _all_frames(records[0].read_bytes())
    assert len(stored) == records[0].num_frames == 34
    assert [frame_index(f) for f in stored] == list(range(0, 100, 3))


def _source(video_csv, line: int) -> str:
    return video_csv.read_text().splitlines()[line].rsplit(" ", 1)[0]


def test_keep_every_loader_draws_the_official_clip_and_snaps_it(keep2, video_csv):
    _, records = keep2
    rec = records[0]
    dec = Recorder()
    loader = _loader(step=4, decoder=dec)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        assert loader(rec, rng).shape == (3, 8, 32, 32)
        (want,) = clip_indices(FRAMES, 8, 4, 1, np.random.default_rng(seed))
        assert (dec.calls[-1] == snap_to_stored(want, 2, rec.num_frames)).all()
        assert np.abs(dec.calls[-1] * 2 - want).max() <= 1
        # the official path on the original file consumes the same random numbers: same crop and flip
        official = np.random.default_rng(seed)
        _loader(step=4)(VideoRecord(_source(video_csv, 0), 0, "original"), official)
        assert rng.random() == official.random()


@pytest.mark.parametrize("k,step,fpc", [(2, 2, 16), (2, 4, 8), (4, 4, 16), (3, 6, 16), (4, 8, 16)])
def test_snapped_clip_times_follow_the_official_distribution(k, step, fpc):
    """What sampling.snap_to_stored documents, over many draws on a long video: the official draw itself (same
    random numbers consumed), every frame within k/2 frames of the official one, mean offset 0, and the window's
    start uniform as the official's."""
    n = 1000
    stored = math.ceil(n / k)
    offsets, starts_snap, starts_official = [], [], []
    for seed in range(3000):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        (official,) = clip_indices(n, fpc, step, 1, a)
        (drawn,) = clip_indices(n, fpc, step, 1, b)
        snapped = snap_to_stored(drawn, k, stored) * k  # the original frame each stored frame is
        assert a.random() == b.random()  # nothing extra drawn
        offsets.append(snapped - official)
        starts_snap.append(snapped[0])
        starts_official.append(official[0])
    offsets = np.concatenate(offsets)
    assert np.abs(offsets).max() <= k / 2
    assert abs(offsets.mean()) < 0.05
    # the window's start: same distribution up to the k-frame grid (two-sample KS statistic, 3000 draws each)
    s, o = np.sort(starts_snap), np.sort(starts_official)
    grid = np.arange(0, n, 1)
    ks = np.abs(np.searchsorted(s, grid, side="right") - np.searchsorted(o, grid, side="right")).max() / len(s)
    assert ks < 0.05


def test_snap_near_the_end_of_a_video_stays_inside_it():
    idx = np.array([0, 5, 9, 10, 11])
    assert snap_to_stored(idx, 4, 3).tolist() == [0, 1, 2, 2, 2]  # 12 frames stored as 0, 4, 8


def test_a_frame_step_that_keep_every_does_not_divide_is_refused_naming_the_key(keep2):
    _, records = keep2
    with pytest.raises(DataError, match=r"keep_every.*frame step is 3.*data.sampling_rate"):
        _loader(step=3)(records[0], np.random.default_rng(0))


def test_new_options_at_their_legacy_values_leave_the_run_state_unchanged(video_csv):
    names = ["v"]
    plain = run_state([str(video_csv)], names, TranscodeOptions(), None, 256)["options"]
    assert not {"bframes", "keep_every", "upscale"} & set(plain)
    new = run_state([str(video_csv)], names, TranscodeOptions(bframes=3, keep_every=2, upscale=False), None, 256)
    assert {k: new["options"][k] for k in ("bframes", "keep_every", "upscale")} == \
        {"bframes": 3, "keep_every": 2, "upscale": False}


def test_no_upscale_keeps_small_videos_at_their_size():
    assert _target_size(176, 144, 256) == (312, 256)
    assert _target_size(176, 144, 256, upscale=False) == (176, 144)
    assert _target_size(1280, 720, 256, upscale=False) == (456, 256)


def test_cli_refuses_keep_every_below_one(tmp_path, video_csv):
    args = [sys.executable, str(ROOT / "data_tools/make_shards.py"), "--csv", str(video_csv), "--out",
            str(tmp_path / "o"), "--keep-every", "0"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 2 and "--keep-every 0" in r.stderr and not (tmp_path / "o").exists()


def test_readers_that_cannot_snap_refuse_keep_every_shards(keep2, shard, monkeypatch):
    """The eval sampling and DALI take a shard's stored frames as the original ones: they refuse such shards (DALI
    on `decoder: auto` falls back to PyAV) instead of sampling another clip distribution."""
    from types import SimpleNamespace

    from jepa_scale.data import sources
    from jepa_scale.data.labelled_clips import LabelledClips

    keep2, shard = str(keep2[0]), str(shard[0])
    kw = dict(frames_per_clip=4, frame_step=2, num_segments=1, transform=lambda f, rng: [f], seed=0)
    with pytest.raises(DataError, match="--keep-every 2; an eval reads shards made without it"):
        LabelledClips.from_shards([keep2], **kw)
    assert len(LabelledClips.from_shards([shard], **kw)) > 0
    dali = SimpleNamespace(decoder="dali", shards=[shard, keep2])
    with pytest.raises(DataError, match="data.decoder=dali: .* was made with make_shards --keep-every"):
        sources.resolve_decoder(dali)
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: object())  # "DALI is installed"
    monkeypatch.setattr(sources.torch.cuda, "is_available", lambda: True)
    assert sources.resolve_decoder(SimpleNamespace(decoder="auto", shards=[keep2])) == "pyav"
    assert sources.subsampled_shards([shard, keep2]) == [keep2]
