import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from jepa_scale.config import load_config
from jepa_scale.data import DataStream, PyAVDecoder, VideoBatches
from jepa_scale.data.messy_videos import frame_index, make_corpus
from jepa_scale.data.sample_order import SampleOrder
from jepa_scale.data.shards.make import make_shards
from jepa_scale.data.shards.source import read_shard_datasets
from jepa_scale.data.shards.transcode import TranscodeOptions
from jepa_scale.data.sources import open_datasets
from jepa_scale.trainer import train
from tests.conftest import ROOT, tiny_raw

OPTS = TranscodeOptions(short_side=48, min_frames=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def mixed_csv(corpus, tmp_path_factory):
    """Every corpus file (good and broken) with its own label, plus a line without a label."""
    p = tmp_path_factory.mktemp("lists") / "mixed.csv"
    p.write_text("".join(f"{e.path} {i}\n" for i, e in enumerate(corpus)) + "no_label_here\n")
    return p


@pytest.fixture(scope="module")
def shards(mixed_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    manifest = make_shards([str(mixed_csv)], str(out), OPTS, shard_size_mb=0.02, workers=2, progress=False)
    return out, manifest


def test_every_row_ends_in_a_shard_or_in_failures(shards, corpus):
    out, m = shards
    lines_in_shards = set()
    for tar in m["shards"]:
        lines_in_shards |= {s["line"] for s in json.loads((out / tar).with_suffix(".json").read_text())["samples"]}
    failed = {f["line"]: f["reason"] for f in m["failures"]}
    n_rows = len(corpus) + 1
    assert lines_in_shards | set(failed) == set(range(1, n_rows + 1)) and not lines_in_shards & set(failed)
    for i, e in enumerate(corpus, start=1):
        if e.shard_failure:
            assert e.shard_failure in failed[i], (e.name, failed.get(i))
        else:
            assert i in lines_in_shards, (e.name, failed.get(i))
    assert failed[n_rows] == "expected 'path label'"
    assert m["num_samples"] == len(lines_in_shards) and len(m["shards"]) > 1
    assert sum(m["classes"].values()) == m["num_samples"]


def test_round_trip_labels_and_frames(shards, corpus):
    out, _ = shards
    (records,), _ = read_shard_datasets([out])
    dec = PyAVDecoder()
    by_label = {i: e for i, e in enumerate(corpus)}
    for r in records:
        e = by_label[r.label]
        assert r.num_frames == e.num_frames and r.path.endswith(".tar")
        idx = [0, r.num_frames // 2, r.num_frames - 1]
        frames = dec.clip(r.read_bytes(), idx)
        assert frames.shape[1:] == (48, 60, 3)  # short side 48
        assert [frame_index(f) for f in frames] == idx, e.name


def test_dali_index_files_equal_dalis_own_tool(shards):
    wds2idx = pytest.importorskip("wds2idx", reason="NVIDIA DALI is not installed (make test installs it)")
    out, m = shards
    for tar in m["shards"]:
        ref = out / "ref.idx"
        wds2idx.IndexCreator(str(out / tar), str(ref), verbose=False).create_index()
        assert (out / tar).with_suffix(".idx").read_text() == ref.read_text()
        ref.unlink()


def test_rerun_continues_and_keeps_finished_shards(mixed_csv, tmp_path):
    out = tmp_path / "s"
    first = make_shards([str(mixed_csv)], str(out), OPTS, shard_size_mb=0.02, progress=False)
    keep, drop = first["shards"][0], first["shards"][-1]
    stamp = os.stat(out / keep).st_mtime_ns
    (out / drop).unlink()  # as if the run had died before this shard was finished
    (out / f".{drop}.tmp").write_bytes(b"partial")
    again = make_shards([str(mixed_csv)], str(out), OPTS, shard_size_mb=0.02, progress=False)
    assert os.stat(out / keep).st_mtime_ns == stamp and not list(out.glob(".*.tmp"))
    assert again["num_samples"] == first["num_samples"]
    assert len(again["failures"]) == len(first["failures"])  # failures are not recorded twice


def test_nothing_is_written_outside_out(corpus, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    evil = lists / "..%2F..%2Fevil name.csv"
    evil.write_text(f"{corpus[0].path} 1\n../../../etc/passwd 2\n")
    out = tmp_path / "out"
    before = set(tmp_path.rglob("*"))
    make_shards([str(evil)], str(out), OPTS, progress=False)
    created = set(tmp_path.rglob("*")) - before
    assert created and all(out in p.parents or p == out for p in created)


def test_cli(mixed_csv, tmp_path):
    r = subprocess.run([sys.executable, "data_tools/make_shards.py", "--csv", str(mixed_csv), "--out",
                        str(tmp_path / "o"), "--short-side", "48", "--min-frames", "8", "--codec", "vp9"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "10 failures" in r.stdout and "line 1:" not in r.stdout  # line 1 (a good h264 file) became a sample
    assert (tmp_path / "o" / "manifest.json").exists()


# -- reading shards for training

def shard_cfg(out, folder, **data):
    return load_config(raw=tiny_raw(None, str(folder), data={"datasets": [], "shards": [str(out)], **data}))


def test_split_by_node_and_worker_covers_every_sample_once_per_epoch(shards, tmp_path):
    out, m = shards
    cfg = shard_cfg(out, tmp_path, batch_size=2)
    datasets, weights = open_datasets(cfg.data)
    n = m["num_samples"]
    ranks = [VideoBatches(datasets, cfg, seed=4, micro_index=r, num_micro=2, weights=weights) for r in range(2)]
    per_epoch = ranks[0].batches_per_epoch
    assert per_epoch == n // 4
    for epoch in range(2):
        seen = []
        for r, vb in enumerate(ranks):
            stream = DataStream(vb, num_workers=2)  # workers build whole batches by index: no overlap
            stream.load_state_dict({"next_batch": epoch * per_epoch})
            for _ in range(per_epoch):
                b = next(stream)
                seen += vb.sample_ids(b.index)
            stream.close()
        assert len(seen) == len(set(seen)) == 4 * per_epoch  # exactly once (the remainder is dropped, as DDP)


def test_mixing_by_weight_and_resampled_mode():
    order = SampleOrder([100, 50], global_batch=10, seed=0, weights=[0.25, 0.75])
    ids = np.concatenate([order.batch(j) for j in range(order.batches_per_epoch)])
    share = np.mean(ids >= 100)
    assert order.batches_per_epoch == 15 and share == pytest.approx(0.75, abs=0.01)
    assert len(set(ids[ids >= 100].tolist())) == 50  # the up-weighted set is seen whole before repeating
    res = SampleOrder([100, 50], global_batch=10, seed=0, weights=[0.25, 0.75], mode="resampled")
    ids = np.concatenate([res.batch(j) for j in range(400)])
    assert np.mean(ids >= 100) == pytest.approx(0.75, abs=0.03)
    assert np.array_equal(res.batch(7), res.batch(7))


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["pyav", "dali"])
def test_training_on_shards_resumes_with_the_same_losses(tmp_path, video_csv, decoder):
    if decoder == "dali":
        pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (make test installs it)")
    codec = "vp9" if decoder == "dali" else "h264"  # DALI's CPU build decodes VP9, not H.264
    out = tmp_path / "shards"
    make_shards([str(video_csv)], str(out), TranscodeOptions(codec=codec, min_frames=8), shard_size_mb=0.05,
                progress=False)

    def cfg(folder, steps, resume):
        return load_config(raw=tiny_raw(None, str(tmp_path / folder),
                                        data={"datasets": [], "shards": [str(out)], "decoder": decoder},
                                        optimization={"max_steps": steps}, meta={"load_checkpoint": resume}))
    train(cfg("whole", 6, False))
    train(cfg("split", 3, False))
    train(cfg("split", 6, True))
    import csv
    read = lambda f: [float(r["loss"]) for r in csv.DictReader(open(tmp_path / f / "jepa_r0.csv"))]  # noqa: E731
    assert read("whole") == pytest.approx(read("split"), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_dali_cpu_pipeline_gives_clips_of_the_right_shape_and_sampling(tmp_path, corpus, seed):
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (make test installs it)")
    from jepa_scale.data.dali_pipeline import DaliClips, reader_pipeline

    good = [e for e in corpus if e.shard_failure is None]
    csv = tmp_path / "good.csv"
    csv.write_text("".join(f"{e.path} {i}\n" for i, e in enumerate(good)))
    out = tmp_path / "vp9"
    make_shards([str(csv)], str(out), TranscodeOptions(codec="vp9", min_frames=8), shard_size_mb=0.05, progress=False)
    tars = sorted(str(p) for p in out.glob("*.tar"))
    cfg = shard_cfg(out, tmp_path / "run", num_frames=8, sampling_rate=4, crop_size=32)
    # the sampling: decode the raw (uncropped) frames the reader pipeline asks for and read their indices
    a = reader_pipeline(tars, [t[:-4] + ".idx" for t in tars], 4, 8, 4, (0.3, 1.0), (0.75, 1.35), seed, 0, 1, 1)
    a.build()
    from nvidia.dali import fn, pipeline_def, types

    for _ in range(3):
        video, vinfo, idx, anchor, shape, flip = a.run()
        for b in range(4):
            n, ids = int(np.asarray(vinfo.at(b))[0]), np.asarray(idx.at(b)).tolist()
            assert len(ids) == 8 and all(0 <= i < n for i in ids)
            if n > 32:  # a window of 32 frames, evenly spaced, as the official sampling
                assert ids[-1] - ids[0] == 31 and all(4 <= d <= 5 for d in np.diff(ids))
            h, w = np.asarray(shape.at(b))
            assert 0 < h <= 64 and 0 < w <= 80 and 0.28 <= h * w / (64 * 80) <= 1.0  # source size, no resize

            @pipeline_def(batch_size=1, num_threads=1, device_id=None)
            def raw():
                return fn.decoders.video(fn.external_source(source=[[np.asarray(video.at(b))]], dtype=types.UINT8),
                                         frames=ids, device="cpu")
            p = raw()
            p.build()
            frames = np.asarray(p.run()[0].at(0))
            # each frame is the one PyAV decodes at that index from the same bytes: the nearest of all frames
            # (lossy VP9 and two YUV->RGB conversions can blur the index pattern by a level, not a frame)
            every = PyAVDecoder().clip(np.asarray(video.at(b)).tobytes(), list(range(n))).astype(np.float32)
            nearest = [int(np.abs(every - f.astype(np.float32)).mean(axis=(1, 2, 3)).argmin()) for f in frames]
            assert nearest == ids
    clips, labels = next(DaliClips(tars, 4, cfg.data, cfg.data_aug, seed=seed))
    assert clips.shape == (4, 3, 8, 32, 32) and clips.dtype == torch.float32 and labels.shape == (4,)
    assert -2.2 < clips.min() and clips.max() < 2.7  # ImageNet-normalised 0..255 values


def test_fps_resampling_and_copy(corpus, tmp_path):
    src = next(e for e in corpus if e.name == "long_h264")  # 150 frames at 10 fps
    csv = tmp_path / "one.csv"
    csv.write_text(f"{src.path} 5\n")
    half = make_shards([str(csv)], str(tmp_path / "fps5"), TranscodeOptions(fps=5, min_frames=8), progress=False)
    (rec,), = read_shard_datasets([tmp_path / "fps5"])[0]
    assert half["num_samples"] == 1 and rec.num_frames == 75 and rec.fps == 5.0
    frames = PyAVDecoder().clip(rec.read_bytes(), [0, 1, 10, 74])
    assert [frame_index(f) for f in frames] == [0, 2, 20, 148]  # every other source frame, by timestamp
    make_shards([str(csv)], str(tmp_path / "copy"), TranscodeOptions(copy=True, min_frames=8), progress=False)
    (rec,), = read_shard_datasets([tmp_path / "copy"])[0]
    assert rec.read_bytes() == src.path.read_bytes() and rec.num_frames == 150
