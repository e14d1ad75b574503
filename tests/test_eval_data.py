"""The frozen evaluation's data: official eval frame sampling, labelled clips, ImageFolder images, image shards."""
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa_scale.data.csv_source import DataError, VideoRecord
from jepa_scale.data.image_folder import ImageError, LabelledImages, decode_image, image_records, scan_image_folder
from jepa_scale.data.labelled_clips import Failures, LabelledClips, NoUsableSamples, collate_clips
from jepa_scale.data.pyav_decoder import PyAVDecoder
from jepa_scale.data.sampling import clip_indices, frame_step_for_duration
from jepa_scale.data.shards.images import make_image_shards, read_image_shards
from jepa_scale.data.synthetic import make_moving_shapes
from tests.conftest import ROOT


def official_eval_indices(n, fpc, fstp, num_clips, rng, random_clip_sampling=True):
    """A literal transcription of the official eval arithmetic (allow_clip_overlap=True); randint -> rng.integers."""
    clip_len = int(fpc * fstp)
    partition_len = n // num_clips
    all_indices = []
    for i in range(num_clips):
        if partition_len > clip_len:
            end_indx = clip_len
            if random_clip_sampling:
                end_indx = rng.integers(clip_len, partition_len)
            start_indx = end_indx - clip_len
            indices = np.linspace(start_indx, end_indx, num=fpc)
            indices = np.clip(indices, start_indx, end_indx - 1).astype(np.int64)
            indices = indices + i * partition_len
        else:
            sample_len = min(clip_len, n) - 1
            indices = np.linspace(0, sample_len, num=sample_len // fstp)
            indices = np.concatenate((indices, np.ones(fpc - sample_len // fstp) * sample_len,))
            indices = np.clip(indices, 0, sample_len - 1).astype(np.int64)
            clip_step = 0
            if n > clip_len:
                clip_step = (n - clip_len) // (num_clips - 1)
            indices = indices + i * clip_step
        all_indices.append(indices)
    return all_indices


def eval_indices(n, fpc, fstp, num_clips, seed, random=True):
    return clip_indices(n, fpc, fstp, num_clips, np.random.default_rng(seed), random, allow_clip_overlap=True)


# -- (a) eval frame sampling

@pytest.mark.parametrize("n,segments,random", [(30, 2, True), (30, 8, True), (64, 2, True), (64, 8, False), (100, 2, True),
                                               (300, 8, True), (1000, 8, True), (1000, 8, False), (129, 1, True)])
def test_eval_sampling_is_the_official_arithmetic(n, segments, random):
    ours = eval_indices(n, 16, 4, segments, seed=3, random=random)
    ref = official_eval_indices(n, 16, 4, segments, np.random.default_rng(3), random)
    assert [a.tolist() for a in ours] == [b.tolist() for b in ref]
    assert all(a.dtype == np.int64 and len(a) == 16 for a in ours)


def test_eval_sampling_documented_facts():
    clips = eval_indices(300, 16, 4, 8, seed=0)
    assert [int(c[0]) for c in clips] == list(range(0, 232, 33))
    assert all(c[-1] - c[0] == 62 for c in clips)  # 64 frames, the last index clipped to 62 and duplicated
    assert clips[0].tolist()[-3:] == [58, 62, 62]
    for n in (30, 64):
        a, b = eval_indices(n, 16, 4, 2, seed=0)
        assert a.tolist() == b.tolist() and a.max() < n
    long = eval_indices(1000, 16, 4, 8, seed=0)  # partitions of 125 > 64: one random window per partition
    assert all(125 * i <= c[0] and c[-1] < 125 * (i + 1) for i, c in enumerate(long))
    assert eval_indices(1000, 16, 4, 8, seed=0)[0].tolist() != eval_indices(1000, 16, 4, 8, seed=1)[0].tolist()


def test_pretraining_sampling_unchanged_by_default():
    def rng():
        return np.random.default_rng(0)

    assert clip_indices(30, 16, 4, 1, rng())[0].tolist() == [0, 5, 10, 15, 20, 25, 29] + [29] * 9
    assert clip_indices(30, 16, 4, 1, rng(), allow_clip_overlap=True)[0].tolist() == \
        official_eval_indices(30, 16, 4, 1, rng())[0].tolist()


def test_frame_step_for_duration():
    assert frame_step_for_duration(2.0, 29.97, 16) == 3  # int(59.94 / 16)
    assert frame_step_for_duration(2.0, 29.97, 16, ceil_fps=True) == 3  # int(60 / 16)
    assert frame_step_for_duration(2.2, 29.5, 16) == 4 and frame_step_for_duration(2.2, 29.5, 16, True) == 4
    assert frame_step_for_duration(1.0, 14.5, 8) == 1 and frame_step_for_duration(1.0, 14.5, 8, True) == 1
    assert frame_step_for_duration(4.0, 15.5, 16) == 3 and frame_step_for_duration(4.0, 15.5, 16, True) == 4
    assert frame_step_for_duration(0.1, 8, 16) == 1  # never 0
    with pytest.raises(ValueError, match="frame rate"):
        frame_step_for_duration(2.0, 0, 16)


# -- (b) labelled clips

CROP = 32


def two_views(frames, rng):
    """Stand-in transform: two random crops, [3, T, CROP, CROP] floats."""
    assert frames.dtype == torch.uint8 and frames.shape[-1] == 3
    x = frames.permute(3, 0, 1, 2).float() / 255
    out = []
    for _ in range(2):
        top, left = (int(rng.integers(0, s - CROP + 1)) for s in x.shape[2:])
        out.append(x[:, :, top:top + CROP, left:left + CROP])
    return out


class SpyDecoder(PyAVDecoder):
    """Records the frame indices each decode asked for (per process)."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def _decode(self, container, stream, indices):
        self.asked.append(np.asarray(indices).tolist())
        return super()._decode(container, stream, indices)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    csv = make_moving_shapes(folder, num_videos=4, num_frames=24, height=64, width=80)
    (folder / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with_bad = folder / "with_bad.csv"
    with_bad.write_text(csv.read_text() + f"{folder / 'broken.mp4'} 7\n{folder / 'missing.mp4'} 8\n")
    return csv, with_bad


def clips(csv, **kw):
    args = dict(frames_per_clip=8, frame_step=2, num_segments=2, transform=two_views, seed=5)
    return LabelledClips.from_csv([str(csv)], **{**args, **kw})


def same(a, b):
    return all(torch.equal(x, y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


def test_clips_nesting_shapes_labels(videos):
    csv, _ = videos
    ds = clips(csv)
    assert len(ds) == 4
    for i in range(4):
        views, label, index, replaced = ds[i]
        assert (label, index, replaced) == (i % 12, i, [])
        assert len(views) == 2 and all(len(s) == 2 for s in views)
        assert all(v.shape == (3, 8, CROP, CROP) and v.dtype == torch.float32 for s in views for v in s)


def test_clips_deterministic_per_seed_epoch_index(videos):
    csv, _ = videos
    a, b = clips(csv, decoder=SpyDecoder()), clips(csv)
    assert same(b[1][0], a[1][0]) and same(a[2][0], b[2][0])
    a.set_epoch(1)
    assert not same(a[1][0], b[1][0])
    b.set_epoch(1)
    assert same(a[1][0], b[1][0])
    # 24 frames, windows of 16: overlapping clips starting at 0 and 8, the last index twice, whatever the epoch
    clip = [0, 2, 5, 7, 10, 12, 14, 14]
    assert a.decoder.asked[0] == clip + [i + 8 for i in clip] == a.decoder.asked[-1]


def test_random_clip_window_changes_with_the_epoch(videos):
    csv, _ = videos
    ds = clips(csv, frames_per_clip=4, num_segments=1, decoder=SpyDecoder())  # window 8 < 24: random end
    for epoch in range(6):
        ds.set_epoch(epoch)
        ds[0]
    assert len({tuple(x) for x in ds.decoder.asked}) > 1
    fixed = clips(csv, frames_per_clip=4, num_segments=1, decoder=SpyDecoder(), random_clip_sampling=False)
    for epoch in range(3):
        fixed.set_epoch(epoch)
        fixed[0]
    assert fixed.decoder.asked == [[0, 2, 5, 7]] * 3  # linspace(0, 8, 4) clipped to 7


def test_clip_duration_sets_the_step(videos):
    csv, _ = videos
    asked = []
    for kw in (dict(frame_step=1, clip_duration=2.0), dict(frame_step=2), dict(frame_step=2, clip_duration=1.0),
               dict(frame_step=1)):
        ds = clips(csv, decoder=SpyDecoder(), **kw)
        ds[0]
        asked.append(ds.decoder.asked[0])
    # 8 fps, 8 frames a clip: 2 s -> step int(2 * 8 / 8) = 2 whatever frame_step says; 1 s -> step 1
    assert asked[0] == asked[1] and asked[2] == asked[3] and asked[0] != asked[2]


def broken_index(ds, source_part):
    return next(i for i, r in enumerate(ds.records) if source_part in r.path)


def test_broken_and_missing_videos_are_replaced_counted_and_logged_once(videos, caplog):
    _, with_bad = videos
    ds = clips(with_bad)
    caplog.set_level(logging.WARNING)
    for name in ("broken.mp4", "missing.mp4"):
        i = broken_index(ds, name)
        views, _, index, replaced = ds[i]
        assert index == i and replaced and replaced[0].source == ds.records[i].source
        assert all(v.shape == (3, 8, CROP, CROP) for s in views for v in s)
        ds[i]  # the same failure again: counted, not logged again
    assert ds.skipped["missing file"] >= 2 and sum(ds.skipped.values()) >= 4
    assert set(ds.failed_sources) >= {f"{with_bad}:5", f"{with_bad}:6"}
    assert caplog.text.count(f"{with_bad}:5") == 1 and caplog.text.count(f"{with_bad}:6") == 1
    assert "broken.mp4" in caplog.text


def test_all_broken_list_raises_instead_of_looping(tmp_path):
    (tmp_path / "bad.csv").write_text("".join(f"/nowhere/v{i}.mp4 {i}\n" for i in range(3)))
    ds = clips(tmp_path / "bad.csv")
    with pytest.raises(NoUsableSamples, match=r"no usable videos: the last \d+ tried in a row failed \(all 3 listed"
                                              r".*Reasons: missing file: \d+ \(e\.g\. .*bad.csv:\d /nowhere/v\d.mp4: missing file"):
        ds[0]
    many = [VideoRecord(f"/nowhere/v{i}.mp4", 0, f"list.csv:{i + 1}") for i in range(1000)]
    ds = LabelledClips(many, 8, 2, 2, two_views, seed=0, max_consecutive_failures=5)
    with pytest.raises(NoUsableSamples, match=r"last 5 tried in a row failed \(\d different ones of the 1000 listed; "
                                              r"max_consecutive_failures=5\)"):
        ds[0]


def test_dataloader_with_a_worker(videos):
    _, with_bad = videos
    ds = clips(with_bad)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1, collate_fn=collate_clips)
    total = Failures()
    got = []
    for views, labels, indices, replaced in loader:
        assert len(views) == 2 and len(views[0]) == 2
        assert views[0][0].shape == (len(labels), 3, 8, CROP, CROP)
        assert labels.dtype == indices.dtype == torch.long
        total.extend(replaced)
        got.append((views, labels, indices))
    assert torch.cat([g[2] for g in got]).tolist() == list(range(6))
    assert ds.skipped == {}  # the worker's copy counted them ...
    assert {f"{with_bad}:5", f"{with_bad}:6"} <= set(total.sources)  # ... and the batches carried them here
    first = collate_clips([ds[0], ds[1], ds[2]])
    assert same(first[0], got[0][0]) and torch.equal(first[1], got[0][1])
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned worker gets
    assert same(copy[4][0], ds[4][0])


def test_clips_from_shards(videos, tmp_path):
    from jepa_scale.data.shards.make import make_shards
    from jepa_scale.data.shards.transcode import TranscodeOptions

    csv, _ = videos
    make_shards([str(csv)], str(tmp_path / "s"), TranscodeOptions(min_frames=8), shard_size_mb=0.01, progress=False)
    ds = LabelledClips.from_shards([str(tmp_path / "s")], frames_per_clip=8, frame_step=2, num_segments=2,
                                   transform=two_views, seed=5)
    assert len(ds) == 4 and ds.records[0].offset >= 0
    views, label, _, replaced = ds[3]
    assert label == 3 and not replaced and views[1][0].shape == (3, 8, CROP, CROP)


# -- (c) images

def write_image(path, rng, size=(20, 24), fmt=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return pixels


@pytest.fixture
def image_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs" / "train"
    pixels = {}
    for rel in ("b_cat/x2.png", "b_cat/x1.PNG", "b_cat/deep/z.jpg", "a_dog/one.JPEG", "a_dog/two.bmp"):
        pixels[rel] = write_image(root / rel, rng, fmt="JPEG" if rel.lower().endswith(("jpg", "jpeg")) else None)
    (root / "a_dog" / "notes.txt").write_text("not an image")
    (root / "b_cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    return root, pixels


def test_scan_image_folder_follows_imagefolder(image_root):
    root, _ = image_root
    records, classes = scan_image_folder(root)
    assert classes == ["a_dog", "b_cat"]
    rels = [(os.path.relpath(p, root), y) for p, y in records]
    assert rels == [("a_dog/one.JPEG", 0), ("a_dog/two.bmp", 0), ("b_cat/bad.png", 1), ("b_cat/x1.PNG", 1),
                    ("b_cat/x2.png", 1), ("b_cat/deep/z.jpg", 1)]


def test_scan_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        scan_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match=f"{tmp_path}: no class folders"):
        scan_image_folder(tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no images .* in the class folder.* cls"):
        scan_image_folder(tmp_path)


def test_decode_image(image_root):
    root, pixels = image_root
    png = decode_image(root / "b_cat" / "x2.png")
    assert png.dtype == torch.uint8 and torch.equal(png, torch.from_numpy(pixels["b_cat/x2.png"]))
    assert decode_image((root / "a_dog" / "one.JPEG").read_bytes()).shape == (20, 24, 3)
    with pytest.raises(ImageError, match="bad.png: not a readable image"):
        decode_image(root / "b_cat" / "bad.png")
    with pytest.raises(ImageError, match="gone.png: missing file"):
        decode_image(root / "gone.png")


def image_views(img, rng):
    assert img.dtype == torch.uint8 and img.ndim == 3
    top = int(rng.integers(0, img.shape[0] - 8 + 1))
    return [img.permute(2, 0, 1).float()[:, top:top + 8, :8] / 255]


def test_labelled_images_replace_the_bad_one(image_root, caplog):
    root, _ = image_root
    records, _ = scan_image_folder(root)
    ds = LabelledImages(records, image_views, seed=1)
    views, label, index, replaced = ds[2]  # bad.png
    assert index == 2 and replaced[0].source.endswith("bad.png") and "not a readable image" in replaced[0].reason
    assert len(views) == 1 and views[0][0].shape == (3, 8, 8)
    assert ds.skipped == {"not a readable image": 1} and "bad.png" in caplog.text
    views, label, _, replaced = ds[0]
    assert label == 0 and replaced == []
    batch = collate_clips([ds[0], ds[1], ds[3]])
    assert batch[0][0][0].shape == (3, 3, 8, 8) and batch[1].tolist() == [0, 0, 1]
    ds.set_epoch(1)
    with pytest.raises(NoUsableSamples, match="no usable images"):
        LabelledImages([(root / "b_cat" / "bad.png", 0)], image_views, seed=0)[0]


# -- (d) image shards

def test_image_shards_round_trip(image_root, tmp_path):
    root, _ = image_root
    m = make_image_shards(str(root), str(tmp_path / "sh"), shard_size_mb=0.001, progress=False)
    assert m["num_samples"] == 5 and len(m["shards"]) > 1 and m["classes"] == ["a_dog", "b_cat"]
    assert [f["path"] for f in m["failures"]] == ["b_cat/bad.png"] and m["samples_per_class"] == [2, 3]
    assert json.loads((tmp_path / "sh" / "classes.json").read_text()) == ["a_dog", "b_cat"]
    records, classes = read_image_shards(tmp_path / "sh")
    good = [(p, y) for p, y in scan_image_folder(root)[0] if not p.endswith("bad.png")]
    assert classes == ["a_dog", "b_cat"] and [r.label for r in records] == [y for _, y in good]
    for rec, (path, _) in zip(records, good):
        assert rec.read_bytes() == Path(path).read_bytes()
        assert torch.equal(decode_image(rec), decode_image(path))
    import tarfile

    with tarfile.open(records[-1].path) as tar:
        key = records[-1].source.rsplit(":", 1)[1]
        assert tar.extractfile(f"{key}.cls").read() == b"1" and tar.getmember(f"{key}.jpg").size == records[-1].size
    assert image_records(tmp_path / "sh")[0] == records and len(image_records(root)[0]) == 6
    ds = LabelledImages(records, image_views, seed=0)
    assert ds[4][1] == 1 and ds[4][3] == []
    with pytest.raises(DataError, match="holds a run made from other inputs: --shard-size-mb"):
        make_image_shards(str(root), str(tmp_path / "sh"), progress=False)


def test_images_cli(image_root, tmp_path):
    root, _ = image_root
    cmd = [sys.executable, "data_tools/make_shards.py", "--images", str(root), "--out", str(tmp_path / "o")]
    r = subprocess.run(cmd + ["--workers", "2"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5 images of 2 classes" in r.stdout and "1 failures" in r.stdout and "b_cat/bad.png" in r.stdout
    assert len(read_image_shards(tmp_path / "o")[0]) == 5
    again = subprocess.run(cmd + ["--shard-size-mb", "1"], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 2 and "holds a run made from other inputs" in again.stderr
    both = subprocess.run(cmd + ["--fps", "5"], capture_output=True, text=True, cwd=ROOT)
    assert both.returncode == 2 and "--fps" in both.stderr
