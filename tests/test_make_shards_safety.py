"""make_shards.py --out: never damages a folder that is not its own, and continues only the run it started."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.shards.make import make_shards
from jepa_scale.data.shards.transcode import TranscodeOptions
from jepa_scale.data.synthetic import make_moving_shapes
from tests.conftest import ROOT

# what the first run of these tests is made with; a rerun overrides some of them
BASE = {"--short-side": "32", "--min-frames": "8", "--shard-size-mb": "0.01"}
# the same run, for tests that call make_shards itself (no interpreter start-up per call)
LIBRARY_BASE = dict(opts=TranscodeOptions(short_side=32, min_frames=8), shard_size_mb=0.01, progress=False)


def cli(csvs, out, **overrides) -> subprocess.CompletedProcess:
    """make_shards.py on `csvs` into `out` with BASE's options; overrides: flag -> value (None: a bare flag)."""
    args = [sys.executable, "data_tools/make_shards.py", "--out", str(out)]
    for c in [csvs] if not isinstance(csvs, list) else csvs:
        args += ["--csv", str(c)]
    for flag, value in {**BASE, **overrides}.items():
        args += [flag] if value is None else [flag, *str(value).split()]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT)


def snapshot(folder) -> dict:
    """Every file under `folder` with its bytes and mtime: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(folder)): (p.read_bytes(), os.stat(p).st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(r: subprocess.CompletedProcess, *phrases):
    assert r.returncode == 2, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and not r.stdout, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line, that says it all
    for phrase in phrases:
        assert phrase in r.stderr, (phrase, r.stderr)


def assert_ok(r: subprocess.CompletedProcess):
    assert r.returncode == 0, (r.stdout[-1000:], r.stderr[-2000:])


def sample_lines(out) -> list[int]:
    """The CSV line of every stored sample, repeats included."""
    m = json.loads((out / "manifest.json").read_text())
    return sorted(s["line"] for tar in m["shards"] for s in json.loads((out / tar).with_suffix(".json").read_text())
                  ["samples"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The CSV of 4 small synthetic videos (16 frames, 48x64)."""
    return make_moving_shapes(tmp_path_factory.mktemp("videos"), num_videos=4, num_frames=16, height=48, width=64)


@pytest.fixture(scope="module")
def first_run(videos, tmp_path_factory):
    """A finished run; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("first") / "shards"
    assert_ok(cli(videos, out))
    return out


def test_a_foreign_folder_is_refused_and_left_untouched(videos, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.tmp").write_text("the user's")
    (out / ".draft.tmp").write_text("the user's too")
    (out / "manifest.json").write_text('{"my": "own manifest"}')
    (out / "failures.jsonl").write_text('{"dataset": "videos", "what": "else"}\n')
    before = snapshot(out)
    r = cli(videos, out)
    assert_refused(r, str(out), "not empty", "new or empty folder", "same command that created")
    assert snapshot(out) == before


def test_an_out_that_is_a_file_is_refused(videos, tmp_path):
    out = tmp_path / "a_file"
    out.write_text("x")
    assert_refused(cli(videos, out), str(out), "not a folder")
    assert out.read_text() == "x"


def test_an_empty_folder_is_taken_and_marked_before_anything_else(videos, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    # what a run killed while writing its state file leaves: still an empty folder to us
    (out / ".make_shards.json.tmp").write_text('{"make_sh')
    assert_ok(cli(videos, out, **{"--codec": "vp9"}))
    state = json.loads((out / "make_shards.json").read_text())
    assert state["make_shards"] == 1
    assert state["csvs"] == [{"csv": str(videos), "name": "videos",
                              "sha256": hashlib.sha256(videos.read_bytes()).hexdigest()}]
    assert state["options"] == {"short_side": 32, "fps": None, "gop": 16, "codec": "vp9", "crf": 23,
                                "fastdecode": True, "copy": False, "min_frames": 8, "shard_size_mb": 0.01,
                                "weights": None}
    m = json.loads((out / "manifest.json").read_text())
    assert {"version", "shards", "num_samples", "classes", "datasets", "failures", "options",
            "videos_per_s"} <= set(m)  # the keys readers of the manifest use are all still there
    assert m["num_samples"] == 4 and m["datasets"][0]["sha256"] == state["csvs"][0]["sha256"]
    assert not list(out.glob(".*.tmp"))


def test_a_rerun_removes_only_the_temporaries_it_made(videos, first_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    ours = [".videos-000099.tar.tmp", ".manifest.json.tmp", ".make_shards.json.tmp"]
    users = {".draft.tmp": "a", "notes.tmp": "b", ".videos.tmp": "c", ".other-000000.tar.tmp": "d"}
    for name in ours:
        (out / name).write_bytes(b"partial")
    for name, text in users.items():
        (out / name).write_text(text)
    assert_ok(cli(videos, out, **{"--workers": "2"}))  # --workers does not change the output: allowed
    assert not any((out / name).exists() for name in ours)
    assert {name: (out / name).read_text() for name in users} == users
    assert sample_lines(out) == [1, 2, 3, 4]


@pytest.mark.parametrize("overrides, says", [
    ({"--codec": "vp9", "--short-side": "64"}, ["--short-side: first run 32, this run 64",
                                                "--codec: first run h264, this run vp9"]),
    ({"--fps": "5"}, ["--fps: first run not given, this run 5.0"]),
    ({"--gop": "8"}, ["--gop: first run 16, this run 8"]),
    ({"--crf": "30"}, ["--crf: first run 23, this run 30"]),
    ({"--no-fastdecode": None}, ["--no-fastdecode: first run not given, this run given"]),
    ({"--copy": None}, ["--copy: first run not given, this run given"]),
    ({"--min-frames": "4"}, ["--min-frames: first run 8, this run 4"]),
    ({"--shard-size-mb": "1"}, ["--shard-size-mb: first run 0.01, this run 1.0"]),
    ({"--weights": "0.5"}, ["--weights: first run not given, this run 0.5"]),
])
def test_a_rerun_with_other_options_is_refused_untouched(videos, first_run, overrides, says):
    before = snapshot(first_run)
    r = cli(videos, first_run, **overrides)
    assert_refused(r, str(first_run), "other inputs", "new --out", *says)
    assert snapshot(first_run) == before


def test_a_rerun_after_the_csv_changed_is_refused_untouched(videos, tmp_path):
    csv = tmp_path / "list.csv"
    lines = videos.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[1:]))
    out = tmp_path / "out"
    make_shards([str(csv)], str(out), **LIBRARY_BASE)
    was = hashlib.sha256(csv.read_bytes()).hexdigest()
    csv.write_text(lines[0] + csv.read_text())  # one more video, at the top: every line number moves
    before = snapshot(out)
    r = cli(csv, out)
    assert_refused(r, str(csv), "CSV changed since the first run", was[:16],
                   hashlib.sha256(csv.read_bytes()).hexdigest()[:16], "new --out")
    assert snapshot(out) == before
    other = tmp_path / "other.csv"
    other.write_text(csv.read_text())
    with pytest.raises(DataError, match=f"--csv: first run {csv}, this run {other};"):
        make_shards([str(other)], str(out), **LIBRARY_BASE)
    with pytest.raises(DataError, match=f"--csv: first run {csv}, this run {csv} {other};"):
        make_shards([str(csv), str(other)], str(out), **LIBRARY_BASE)
    assert snapshot(out) == before


def test_a_dataset_named_like_the_prefix_of_another_keeps_its_own_shards(videos, tmp_path):
    lines = videos.read_text().splitlines(keepends=True)
    a, ab = tmp_path / "k.csv", tmp_path / "k-b.csv"
    a.write_text("".join(lines[:2]))
    ab.write_text("".join(lines[2:]))
    out = tmp_path / "out"
    for _ in range(2):  # the rerun must not take k-b's shards for k's either
        m = make_shards([str(a), str(ab)], str(out), **LIBRARY_BASE)
        assert [(d["name"], d["num_samples"]) for d in m["datasets"]] == [("k", 2), ("k-b", 2)]
        assert len(m["shards"]) == len(set(m["shards"])) and sample_lines(out) == [1, 1, 2, 2]


def test_a_journal_line_cut_short_by_a_kill_is_dropped(videos, first_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    with open(out / "failures.jsonl", "a") as f:
        f.write('{"dataset": "videos", "li')  # as a kill -9 in the middle of a write would leave it
    assert_ok(cli(videos, out))
    assert [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()] == []
    assert sample_lines(out) == [1, 2, 3, 4]


@pytest.mark.slow
def test_kill_9_at_any_point_then_a_rerun_completes_the_run(tmp_path):
    csv = make_moving_shapes(tmp_path / "v", num_videos=8, num_frames=16, height=48, width=64)
    for delay in (0.3, 1.0, 2.0, 3.0):  # from during the start-up to between shards
        out = tmp_path / f"out{delay}"
        args = [sys.executable, "data_tools/make_shards.py", "--csv", str(csv), "--out", str(out)]
        args += [x for kv in BASE.items() for x in kv]
        p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert_ok(cli(csv, out))
        assert sample_lines(out) == list(range(1, 9)), delay  # each video once: none lost, none twice
        assert not list(out.glob(".*.tmp"))
