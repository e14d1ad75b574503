
import numpy as np
import pytest
import torch

from jepa_scale.data import ClipLoader, DataError, DataStream, PyAVDecoder, VideoBatches, VideoError, VideoRecord
from jepa_scale.data.augment import MEAN, STD, augment_clip, crop_params
from jepa_scale.data.csv_source import read_video_csv, read_video_lists
from jepa_scale.data.messy_videos import frame_index, make_corpus, write_csv
from jepa_scale.data.official_augment import official_augment
from jepa_scale.data.sampling import clip_indices


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {e.name: e for e in make_corpus(tmp_path_factory.mktemp("corpus"))}


# -- CSV

def test_csv_reports_bad_lines_with_numbers(tmp_path):
    p = tmp_path / "list.csv"
    p.write_text("/data/a.mp4 3\n\n/data/with space/b.mp4 4\njustonefield\n/data/c.mp4 cat\n")
    recs, bad = read_video_csv(p)
    assert [(r.path, r.label) for r in recs] == [("/data/a.mp4", 3), ("/data/with space/b.mp4", 4)]
    assert recs[1].source == f"{p}:3"
    assert [(b.line, b.reason) for b in bad] == [(4, "expected 'path label'"), (5, "label 'cat' is not an integer")]


def test_csv_errors_name_the_file(tmp_path, caplog):
    with pytest.raises(DataError, match="missing.csv: video list not found"):
        read_video_lists([str(tmp_path / "missing.csv")])
    (tmp_path / "bad.csv").write_text("nolabel\n")
    with pytest.raises(DataError, match="no usable video lines"):
        read_video_lists([str(tmp_path / "bad.csv")])
    assert "bad.csv:1" in caplog.text


# -- clip sampling (official semantics)

def test_clip_window_without_random_end_is_the_official_one():
    (idx,) = clip_indices(300, 16, 4, 1, np.random.default_rng(0), random_clip_sampling=False)
    assert idx.tolist() == [0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63]


def test_random_clip_end_is_uniform_inside_the_video():
    rng = np.random.default_rng(0)
    ends = []
    for _ in range(500):
        (idx,) = clip_indices(300, 16, 4, 1, rng)
        assert len(idx) == 16 and np.all(np.diff(idx) >= 4) and np.all(np.diff(idx) <= 5)
        assert idx[-1] - idx[0] == 63
        ends.append(idx[-1] + 1)
    assert min(ends) < 80 and max(ends) > 280 and max(ends) <= 299


def test_num_clips_take_one_clip_per_segment():
    clips = clip_indices(300, 8, 2, 3, np.random.default_rng(1))
    for i, idx in enumerate(clips):
        assert np.all(idx >= 100 * i) and np.all(idx < 100 * (i + 1))


def test_short_video_repeats_its_last_frame():
    (idx,) = clip_indices(30, 16, 4, 1, np.random.default_rng(0))
    assert idx.tolist() == [0, 5, 10, 15, 20, 25, 29] + [29] * 9


# -- augmentation

def test_crop_params_respect_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        top, left, h, w = crop_params(240, 320, (0.3, 1.0), (0.75, 1.35), rng)
        assert 0 <= top <= 240 - h and 0 <= left <= 320 - w
        assert 0.28 <= h * w / (240 * 320) <= 1.0
        assert 0.7 <= w / h <= 1.4


def test_crop_fallback_is_a_centre_crop():
    assert crop_params(100, 300, (2.0, 3.0), (0.75, 1.35), np.random.default_rng(0)) == (0, 82, 100, 135)


def test_normalisation_of_a_constant_clip():
    frames = torch.full((4, 50, 60, 3), 128, dtype=torch.uint8)
    out = augment_clip(frames, 32, (0.3, 1.0), (0.75, 1.35), np.random.default_rng(0))
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(out[c], torch.tensor((128 / 255 - MEAN[c]) / STD[c]), atol=1e-5)


def test_flip_about_half_the_time():
    frames = torch.zeros((2, 40, 40, 3), dtype=torch.uint8)
    frames[:, :, 20:] = 255
    rng = np.random.default_rng(0)
    flips = sum(augment_clip(frames, 16, (1.0, 1.0), (1.0, 1.0), rng)[0, 0, 8, 0] > 0 for _ in range(400))
    assert 160 < flips < 240
    rng = np.random.default_rng(0)
    assert not any(augment_clip(frames, 16, (1.0, 1.0), (1.0, 1.0), rng, flip=False)[0, 0, 8, 0] > 0
                   for _ in range(50))


def test_uint8_path_equals_the_official_float_path_within_one_level():
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 90, 120, 3), dtype=np.uint8))
    for seed in range(5):
        ours = augment_clip(frames, 48, (0.3, 1.0), (0.75, 1.35), np.random.default_rng(seed))
        ref = official_augment(frames, 48, (0.3, 1.0), (0.75, 1.35), np.random.default_rng(seed))
        assert (ours - ref).abs().max() <= 1.01 / (255 * min(STD))


# -- decoding real-world files

GOOD = ["h264", "h264_yuv444p", "hevc", "mpeg4_avi", "mjpeg_avi", "vp8_webm", "vp9_webm", "cinepak_avi",
        "rgb555_avi", "ffv1_mkv", "vfr_mp4", "garbage_audio_mkv", "long_h264"]


@pytest.mark.parametrize("name", GOOD)
def test_decoder_returns_exactly_the_requested_frames(corpus, name):
    e, dec = corpus[name], PyAVDecoder()
    assert dec.probe(str(e.path)).num_frames == e.num_frames
    n = e.num_frames
    for idx in ([0, 1, 2, 3], [n - 1, 5, 5, 0], [n // 2, n // 2 + 4, n - 1], [max(0, n - 70), n - 20, n - 2]):
        frames = dec.clip(str(e.path), idx)
        assert frames.dtype == np.uint8 and frames.shape == (len(idx), 64, 80, 3)
        assert [frame_index(f) for f in frames] == idx, (name, idx)


@pytest.mark.parametrize("name", ["truncated_mp4", "zero_bytes", "tiny", "not_a_video", "audio_only", "missing"])
def test_broken_files_raise_a_reason(corpus, name):
    e = corpus[name]
    with pytest.raises(VideoError) as err:
        PyAVDecoder().clip(str(e.path), [0, 1])
    assert e.broken_reason in err.value.reason


def test_header_that_overstates_length_resamples_inside_the_real_frames(corpus, tiny_cfg):
    path = str(corpus["truncated_mkv"].path)
    dec = PyAVDecoder()
    claimed = dec.probe(path).num_frames
    with pytest.raises(VideoError) as err:
        dec.clip(path, [claimed - 1])
    real = err.value.true_frames
    assert 0 < real < claimed
    cfg = tiny_cfg(data={"num_frames": 8, "sampling_rate": 4, "crop_size": 32})
    loader = ClipLoader(cfg.data, cfg.data_aug, dec)
    for seed in range(5):
        assert loader(VideoRecord(path, 0, "t"), np.random.default_rng(seed)).shape == (3, 8, 32, 32)


# -- batches and the stream

def video_masks(cfg):
    from jepa_scale.masks import MultiBlockMasks

    return {"video": MultiBlockMasks.for_video(cfg)}


def test_batches_are_a_function_of_seed_and_position(tiny_cfg):
    cfg = tiny_cfg()
    a = VideoBatches([read_video_lists(cfg.data.datasets)], cfg, seed=3, mask_fns=video_masks(cfg))
    b = VideoBatches([read_video_lists(cfg.data.datasets)], cfg, seed=3, mask_fns=video_masks(cfg))
    x, y = a[5], b[5]
    assert torch.equal(x.inputs["video"], y.inputs["video"])
    assert all(torch.equal(p, q) for p, q in zip(x.masks["video"].context, y.masks["video"].context))
    assert x.inputs["video"].shape == (4, 3, 4, 64, 64) and len(x.masks["video"].context) == 2
    assert not torch.equal(a[6].inputs["video"], x.inputs["video"])


def test_masks_come_from_the_injected_functions_and_a_probe_batch_has_none(tiny_cfg):
    cfg = tiny_cfg()
    recs = [read_video_lists(cfg.data.datasets)]
    calls = []

    def fake(batch_size, batch_counter, seed):  # records what the data layer asks of a mask function
        calls.append((batch_size, batch_counter, seed))
        return video_masks(cfg)["video"](batch_size, batch_counter, seed)

    masked = VideoBatches(recs, cfg, seed=3, mask_fns={"video": fake, "other": fake})[2]
    probe = VideoBatches(recs, cfg, seed=3)[2]
    assert set(masked.masks) == {"video", "other"} and probe.masks == {}
    assert calls[0][:2] == (4, 2) and calls[0] == calls[1]  # one placement seed per micro-batch, all modalities
    assert torch.equal(masked.inputs["video"], probe.inputs["video"])  # masks draw from their own generator


def test_micro_batches_partition_each_global_batch_and_epochs_cover_every_video(tiny_cfg):
    cfg = tiny_cfg()
    recs = read_video_lists(cfg.data.datasets)
    parts = [VideoBatches([recs], cfg, seed=1, micro_index=r, num_micro=2) for r in range(2)]
    per_epoch = parts[0].batches_per_epoch
    assert per_epoch == 16 // 8
    for epoch in range(2):
        seen = []
        for j in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            ids = [p.sample_ids(j) for p in parts]
            assert not set(ids[0]) & set(ids[1])
            seen += ids[0] + ids[1]
        assert sorted(seen) == list(range(16))
    assert parts[0].sample_ids(0) != parts[0].sample_ids(per_epoch)  # a new order each epoch


def test_bad_videos_are_skipped_and_reported(tiny_cfg, corpus, video_csv, tmp_path):
    good = [line for line in video_csv.read_text().splitlines()]
    bad = [corpus[n] for n in ("zero_bytes", "not_a_video", "missing", "truncated_mp4")]
    mixed = tmp_path / "mixed.csv"
    write_csv(bad, mixed)
    mixed.write_text(mixed.read_text() + "\n".join(good[:4]) + "\n")
    cfg = tiny_cfg(data={"datasets": [str(mixed)], "batch_size": 8})
    batch = VideoBatches([read_video_lists(cfg.data.datasets)], cfg, seed=0, mask_fns=video_masks(cfg))[0]
    assert batch.inputs["video"].shape[0] == 4 and len(batch.skipped) == 4
    reasons = " | ".join(f"{s} -> {r}" for s, r in batch.skipped)
    for e in bad:
        assert str(e.path) in reasons and e.broken_reason in reasons
    assert batch.masks["video"].context[0].shape[0] == 4


def test_stream_skips_batches_without_any_usable_video(tiny_cfg, corpus, tmp_path):
    bad = tmp_path / "bad.csv"
    write_csv([corpus["zero_bytes"]] * 9 + [corpus["h264"]] * 3, bad)  # lines 10-12 are the good ones
    cfg = tiny_cfg(data={"datasets": [str(bad)], "batch_size": 2})
    batches = VideoBatches([read_video_lists(cfg.data.datasets)], cfg, seed=0)
    stream = DataStream(batches, skip_report=tmp_path / "skips.tsv")
    got = [next(stream) for _ in range(4)]
    consumed = range(got[-1].index + 1)
    good = {j: sum(i >= 9 for i in batches.sample_ids(j)) for j in consumed}
    assert [b.index for b in got] == [j for j in consumed if good[j]]
    assert [b.size for b in got] == [good[b.index] for b in got]
    assert stream.empty_batches == sum(1 for j in consumed if not good[j]) > 0
    n_bad = 2 * len(consumed) - sum(good.values())
    assert stream.skipped["file too small"] == n_bad and stream.next_batch == got[-1].index + 1
    stream.close()
    assert len((tmp_path / "skips.tsv").read_text().splitlines()) == n_bad


@pytest.mark.parametrize("workers", [0, 1])
def test_stream_resumes_at_the_same_batch(tiny_cfg, workers):
    cfg = tiny_cfg()
    recs = read_video_lists(cfg.data.datasets)
    whole = DataStream(VideoBatches([recs], cfg, seed=2), num_workers=workers)
    expected = [next(whole).inputs["video"] for _ in range(5)]
    first = DataStream(VideoBatches([recs], cfg, seed=2), num_workers=workers)
    for _ in range(3):
        next(first)
    state = first.state_dict()
    resumed = DataStream(VideoBatches([recs], cfg, seed=2), num_workers=workers)
    resumed.load_state_dict(state)
    assert torch.equal(next(resumed).inputs["video"], expected[3])
    assert torch.equal(next(resumed).inputs["video"], expected[4])


def test_too_few_videos_for_a_batch(tiny_cfg):
    cfg = tiny_cfg(data={"batch_size": 32})
    with pytest.raises(DataError, match="cannot fill one global batch"):
        VideoBatches([read_video_lists(cfg.data.datasets)], cfg, seed=0)
