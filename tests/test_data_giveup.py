"""A video list that cannot give clips ends the run with one clear error instead of looping (and logging) forever.

Every stream here reads from `Bounded` batches, which fail loudly past a batch index: code that would loop fails
the test instead of hanging it, with any number of workers (the error of a worker reaches the main process).
"""
import logging

import pytest

import jepa_scale.data.stream as stream_module
from jepa_scale.config import load_config
from jepa_scale.data import DataStream, VideoBatches
from jepa_scale.data.csv_source import (
    RELATIVE_NOT_FOUND,
    DataError,
    NoUsableVideos,
    read_video_csv,
    read_video_lists,
)
from jepa_scale.data.messy_videos import make_corpus, write_csv
from jepa_scale.data.synthetic import make_moving_shapes
from tests.conftest import tiny_raw

BOUND = 40  # batches: far past where each stream here must give up, far short of a hang


class Bounded(VideoBatches):
    def __getitem__(self, j):
        if j >= BOUND:
            raise RuntimeError(f"read batch {j}: the stream did not give up")
        return super().__getitem__(j)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return [e for e in make_corpus(tmp_path_factory.mktemp("corpus")) if e.broken_reason]


def config(csv, tmp_path, **data):
    return load_config(raw=tiny_raw(str(csv), str(tmp_path / "run"), data=data))


def stream_of(cfg, workers=0, report=None):
    return DataStream(Bounded([read_video_lists(cfg.data.datasets)], cfg, seed=0), num_workers=workers,
                      skip_report=report)


def read_all(stream, n=BOUND):
    try:
        return [next(stream) for _ in range(n)]
    finally:
        stream.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_all_broken_list_raises_naming_the_csv_and_the_reasons(broken, tmp_path, workers):
    csv = write_csv(broken * 3, tmp_path / "broken.csv")  # 18 videos, 6 kinds of breakage: one epoch of 3 batches
    stream = stream_of(config(csv, tmp_path, batch_size=6), workers, tmp_path / "skips.tsv")
    with pytest.raises(NoUsableVideos) as err:
        read_all(stream)
    msg = str(err.value)
    print(msg)
    assert isinstance(err.value, DataError) and "\n" not in msg
    assert str(csv) in msg and "all 18 videos listed were tried (18 tries)" in msg
    for counted in ("file too small: 6", "not a readable video: 6", "no video stream: 3", "missing file: 3"):
        assert counted in msg
    assert str(tmp_path / "skips.tsv") in msg and "reachable from this machine" in msg
    assert stream.next_batch == 3


def test_consecutive_failures_limit_gives_up_before_a_whole_pass(broken, tmp_path):
    csv = write_csv(broken * 10, tmp_path / "broken.csv")  # 60 videos, batches of 4
    stream = stream_of(config(csv, tmp_path, max_consecutive_failures=8))
    with pytest.raises(NoUsableVideos, match=r"the last 8 videos tried in a row \(8 different ones of the 60 "
                                             r"listed\) gave no clip \(data.max_consecutive_failures=8\)"):
        read_all(stream)
    assert stream.next_batch == 2


def test_the_limit_must_be_positive(tmp_path):
    cfg = config(None, tmp_path)
    cfg.data.max_consecutive_failures = 0
    assert ("data.max_consecutive_failures", "must be positive, got 0") in cfg.problems()


def test_relative_paths_resolve_next_to_the_csv_from_another_working_directory(tmp_path, monkeypatch):
    make_moving_shapes(tmp_path / "data" / "clips", num_videos=8, num_frames=24, height=72, width=88, seed=1)
    names = sorted(p.name for p in (tmp_path / "data" / "clips").glob("*.mp4"))
    csv = tmp_path / "data" / "relative.csv"
    csv.write_text("".join(f"clips/{n} 0\n" for n in names) + f"{tmp_path / 'data' / 'clips' / names[0]} 1\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    recs, _ = read_video_csv(csv)
    assert recs[0].path == str(tmp_path / "data" / "clips" / names[0]) and not recs[0].unusable
    assert recs[-1].path == str(tmp_path / "data" / "clips" / names[0])  # absolute: as written
    batches = read_all(stream_of(config(csv, tmp_path)), 3)
    assert [b.size for b in batches] == [4, 4, 4] and not any(b.skipped for b in batches)


def test_relative_path_found_nowhere_says_where_it_looked(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    csv = tmp_path / "lists" / "gone.csv"
    csv.write_text("".join(f"clips/v{i}.mp4 0\n" for i in range(8)))
    monkeypatch.chdir(tmp_path)
    recs, _ = read_video_csv(csv)
    assert recs[0].path == "clips/v0.mp4"
    assert recs[0].unusable == (f"{RELATIVE_NOT_FOUND} (looked for {tmp_path / 'lists' / 'clips' / 'v0.mp4'} next "
                                f"to the CSV and {tmp_path / 'clips' / 'v0.mp4'} in the working directory)")
    with pytest.raises(NoUsableVideos) as err:
        read_all(stream_of(config(csv, tmp_path)))
    msg = str(err.value)
    print(msg)
    assert f"{RELATIVE_NOT_FOUND}: 8" in msg and "Relative paths in a CSV are looked up next to the CSV" in msg
    assert str(tmp_path) in msg


def test_filter_short_videos_with_clips_longer_than_every_video(tmp_path, video_csv):
    # the videos have 24 frames; a clip of 16 frames every 2nd needs 32
    stream = stream_of(config(video_csv, tmp_path, filter_short_videos=True, num_frames=16, sampling_rate=2))
    with pytest.raises(NoUsableVideos) as err:
        read_all(stream)
    msg = str(err.value)
    print(msg)
    assert str(video_csv) in msg and "too short: 16" in msg and "24 frames < 32" in msg
    assert "data.filter_short_videos is true" in msg


def test_mostly_good_list_trains_and_logs_each_reason_a_bounded_number_of_times(broken, video_csv, tmp_path,
                                                                                caplog, monkeypatch):
    monkeypatch.setattr(stream_module, "LOG_LINES_PER_KIND", 3)  # the real limit (20) needs a longer run
    mixed = write_csv(broken * 2, tmp_path / "mixed.csv")  # 12 broken videos, then 16 good ones
    mixed.write_text(mixed.read_text() + video_csv.read_text())
    stream = stream_of(config(mixed, tmp_path), report=tmp_path / "skips.tsv")
    with caplog.at_level(logging.WARNING, logger="jepa_scale.data.stream"):
        batches = [next(stream) for _ in range(10)]
        stream.close()
    assert all(b.size for b in batches) and stream.next_batch >= 10
    assert sum(b.size for b in batches) + sum(stream.skipped.values()) == 4 * stream.next_batch
    report = (tmp_path / "skips.tsv").read_text().splitlines()
    assert len(report) == sum(stream.skipped.values())  # the report stays complete
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped video ")]
    per_reason = {k: sum(f": {k}" in line for line in lines) for k in stream.skipped}
    print(per_reason, dict(stream.skipped))
    assert max(per_reason.values()) == 3 < max(stream.skipped.values())
    assert "further ones are counted, not logged one by one" in caplog.text
    assert "skipped in total (beyond the first 3 of each logged)" in caplog.text
