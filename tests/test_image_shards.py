"""make_shards --images: the same run rules, journal, resume and accounting as video shards (test_make_shards_safety)."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.image_folder import decode_image, scan_image_folder
from jepa_scale.data.shards.images import make_image_shards, read_image_shards
from jepa_scale.data.shards.make import make_shards
from jepa_scale.data.shards.transcode import TranscodeOptions
from jepa_scale.data.shards.writer import ShardWriter
from jepa_scale.data.synthetic import make_moving_shapes
from tests.conftest import ROOT
from tests.test_make_shards_safety import assert_ok, assert_refused, snapshot

SMALL = 0.001  # MB: a shard every image or two


def write_images(root, per_class=4, classes=("a_dog", "b_cat"), side=16, seed=0):
    """An ImageFolder split of noise PNGs, with one file per class that is not an image. Returns the bad files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    bad = []
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / c / f"{n:04d}.png")
        (root / c / "zz_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
        bad.append(f"{c}/zz_bad.png")
    return bad


def cli(root, out, *extra) -> subprocess.CompletedProcess:
    args = [sys.executable, "data_tools/make_shards.py", "--images", str(root), "--out", str(out),
            "--shard-size-mb", str(SMALL), *extra]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT)


def stored_paths(out) -> list[str]:
    """The relative path of every stored image, in shard order, repeats included."""
    m = json.loads((out / "manifest.json").read_text())
    return [s["path"] for tar in m["shards"] for s in json.loads((out / tar).with_suffix(".json").read_text())
            ["samples"]]


def scanned(root) -> list[str]:
    return [os.path.relpath(p, root) for p, _ in scan_image_folder(root)[0]]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs") / "train"
    write_images(root)
    return root


@pytest.fixture(scope="module")
def first_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("first") / "shards"
    make_image_shards(str(root), str(out), SMALL, progress=False)
    return out


def test_manifest_accounts_for_every_file_scanned(root, first_run):
    out = first_run
    m = json.loads((out / "manifest.json").read_text())
    files = scanned(root)
    rows = sorted((f, os.stat(root / f).st_size) for f in files)
    sha = hashlib.sha256("".join(f"{p}\t{s}\n" for p, s in rows).encode()).hexdigest()
    state = json.loads((out / "make_shards.json").read_text())
    assert state == {"make_shards": 1, "images": [{"images": str(root), "name": "train", "sha256": sha}],
                     "options": {"shard_size_mb": SMALL}}
    assert m["kind"] == "images" and m["make_shards"] == 1 and m["options"] == {"shard_size_mb": SMALL}
    assert m["num_samples"] + len(m["failures"]) == len(files) == 10
    assert m["failures"] == [{"dataset": "train", "path": p, "reason": m["failures"][i]["reason"]}
                             for i, p in enumerate(["a_dog/zz_bad.png", "b_cat/zz_bad.png"])]
    assert all("not a readable image" in f["reason"] for f in m["failures"])
    assert m["datasets"] == [{"name": "train", "source": str(root), "sha256": sha, "shards": m["shards"],
                              "num_files": 10, "num_samples": 8, "num_failures": 2}]
    assert m["classes"] == ["a_dog", "b_cat"] and m["samples_per_class"] == [4, 4] and len(m["shards"]) > 2
    assert stored_paths(out) == [f for f in files if "zz_bad" not in f]  # once each, in scan order
    assert [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()] == m["failures"]
    assert not list(out.glob(".*.tmp"))


def test_a_rerun_of_a_finished_run_changes_no_shard(root, first_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    def kept():  # the shards, their sidecars and the state file: bytes and mtimes
        return {k: v for k, v in snapshot(out).items() if k.startswith("train-") or k == "make_shards.json"}

    before = kept()
    m = make_image_shards(str(root), str(out), SMALL, progress=False, workers=2)  # --workers may change
    assert kept() == before and (out / "failures.jsonl").read_bytes() == (first_run / "failures.jsonl").read_bytes()
    assert m["num_samples"] == 8 and len(m["failures"]) == 2 and stored_paths(out) == stored_paths(first_run)


@pytest.mark.parametrize("stop_after", [2, 5, 7])  # 7: after a journalled failure
def test_an_interrupted_run_rerun_keeps_every_image_exactly_once(root, tmp_path, monkeypatch, stop_after):
    out = tmp_path / "out"
    add, added = ShardWriter.add, []

    def add_then_die(self, *args):
        if len(added) == stop_after:
            raise KeyboardInterrupt  # as a kill between two images would stop it
        added.append(args[0])
        add(self, *args)

    monkeypatch.setattr(ShardWriter, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        make_image_shards(str(root), str(out), SMALL, progress=False)
    monkeypatch.setattr(ShardWriter, "add", add)
    assert not (out / "manifest.json").exists() and (out / "make_shards.json").exists()
    done_before = len(list(out.glob("train-*.tar")))
    (out / ".train-000099.tar.tmp").write_bytes(b"partial")  # what a kill in the middle of a shard leaves
    (out / ".classes.json.tmp").write_bytes(b"[")
    m = make_image_shards(str(root), str(out), SMALL, progress=False)
    files = scanned(root)
    assert stored_paths(out) == [f for f in files if "zz_bad" not in f]
    assert [f["path"] for f in m["failures"]] == ["a_dog/zz_bad.png", "b_cat/zz_bad.png"]  # journalled once
    assert m["datasets"][0]["num_samples"] + m["datasets"][0]["num_failures"] == len(files)
    assert done_before >= 1 and not list(out.glob(".*.tmp"))
    records, classes = read_image_shards(out)
    assert [r.label for r in records] == [0] * 4 + [1] * 4 and classes == ["a_dog", "b_cat"]


def test_a_journal_line_cut_short_by_a_kill_is_dropped(root, first_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    lines = (out / "failures.jsonl").read_text().splitlines(keepends=True)
    (out / "failures.jsonl").write_text(lines[0] + lines[1][:10])  # the second failure's line, cut by a kill
    m = make_image_shards(str(root), str(out), SMALL, progress=False)
    assert [f["path"] for f in m["failures"]] == ["a_dog/zz_bad.png", "b_cat/zz_bad.png"]
    assert (out / "failures.jsonl").read_text() == "".join(lines)


def test_a_rerun_with_other_options_or_another_folder_is_refused_untouched(root, first_run, tmp_path):
    before = snapshot(first_run)
    assert_refused(cli(root, first_run, "--shard-size-mb", "1"), str(first_run), "other inputs", "new --out",
                   f"--shard-size-mb: first run {SMALL}, this run 1.0", "same image folder")
    other = tmp_path / "val"
    shutil.copytree(root, other)
    with pytest.raises(DataError, match=f"--images: first run {root}, this run {other};"):
        make_image_shards(str(other), str(first_run), SMALL, progress=False)
    assert snapshot(first_run) == before


@pytest.mark.parametrize("change", ["removed", "added", "renamed", "resized"])
def test_a_rerun_after_the_folder_changed_is_refused_untouched(root, tmp_path, change):
    mine = tmp_path / "train"
    shutil.copytree(root, mine)
    out = tmp_path / "out"
    make_image_shards(str(mine), str(out), SMALL, progress=False)
    was = json.loads((out / "make_shards.json").read_text())["images"][0]["sha256"]
    image = mine / "a_dog" / "0001.png"
    if change == "removed":
        image.unlink()
    elif change == "added":
        shutil.copy(image, mine / "b_cat" / "new.png")
    elif change == "renamed":
        image.rename(mine / "a_dog" / "0009.png")
    else:
        image.write_bytes(image.read_bytes() + b"\0")
    before = snapshot(out)
    with pytest.raises(DataError, match=rf"{mine}: image folder changed since the first run \(sha256 {was[:16]}\.\.\. "
                                        rf"then, .*same image folder; otherwise use a new --out"):
        make_image_shards(str(mine), str(out), SMALL, progress=False)
    assert snapshot(out) == before


def test_foreign_folders_and_video_runs_are_refused_untouched(root, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("the user's")
    old = tmp_path / "old_image_run"  # what make_image_shards wrote before it had a state file
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"version": 1, "kind": "images", "shards": [], "classes": []}))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_refused(cli(root, foreign), str(foreign), "not empty", "new or empty folder")
    for out, says in ((foreign, "not empty"), (old, "not empty"), (a_file, "not a folder")):
        before = snapshot(out) if out.is_dir() else out.read_text()
        with pytest.raises(DataError, match=f"--out {out}: .*{says}"):
            make_image_shards(str(root), str(out), SMALL, progress=False)
        assert (snapshot(out) if out.is_dir() else out.read_text()) == before
    csv = make_moving_shapes(tmp_path / "v", num_videos=1, num_frames=8, height=32, width=32)
    videos = tmp_path / "videos"
    opts = dict(opts=TranscodeOptions(short_side=32, min_frames=4), shard_size_mb=SMALL, progress=False)
    make_shards([str(csv)], str(videos), **opts)
    before = snapshot(videos)
    assert_refused(cli(root, videos), str(videos), f"first run --csv {csv}, this run --images {root}")
    assert snapshot(videos) == before
    images = tmp_path / "images"
    make_image_shards(str(root), str(images), SMALL, progress=False)
    with pytest.raises(DataError, match=f"first run --images {root}, this run --csv {csv};"):
        make_shards([str(csv)], str(images), **opts)


def test_a_wrong_root_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="image folder not found"):
        make_image_shards(str(tmp_path / "nope"), str(out), progress=False)
    assert not out.exists()


def test_manifests_of_the_earlier_version_still_read(first_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(first_run, out)
    m = json.loads((out / "manifest.json").read_text())
    old = {k: m[k] for k in ("version", "kind", "root", "shards", "num_samples", "classes", "samples_per_class",
                             "shard_size_mb")}
    old["failures"] = [{"path": f["path"], "reason": f["reason"]} for f in m["failures"]]
    (out / "manifest.json").write_text(json.dumps(old))
    records, classes = read_image_shards(out)
    first, first_classes = read_image_shards(first_run)
    assert classes == first_classes and len(records) == len(first) == 8
    assert [(r.label, r.offset, r.size) for r in records] == [(r.label, r.offset, r.size) for r in first]
    assert decode_image(records[0]).shape == (16, 16, 3)


def test_cli_resumes_and_reports(root, tmp_path):
    out = tmp_path / "o"
    r = cli(root, out, "--workers", "2")
    assert_ok(r)
    assert "8 images of 2 classes" in r.stdout and "2 failures" in r.stdout and "b_cat/zz_bad.png" in r.stdout
    again = cli(root, out)
    assert_ok(again)
    assert again.stdout == r.stdout and len(read_image_shards(out)[0]) == 8


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_completes_it(tmp_path):
    root = tmp_path / "train"
    write_images(root, per_class=60, side=40)  # ~5 kB a PNG: a shard an image, 120 shards
    files = scanned(root)
    for shards_seen in (0, 5, 40):  # during the start-up, early, later
        out = tmp_path / f"out{shards_seen}"
        args = [sys.executable, "data_tools/make_shards.py", "--images", str(root), "--out", str(out),
                "--shard-size-mb", str(SMALL)]
        p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while (shards_seen and len(list(out.glob("train-*.tar"))) < shards_seen) and time.monotonic() < deadline:
            time.sleep(0.005)
        if not shards_seen:
            time.sleep(0.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert not (out / "manifest.json").exists(), "the run finished before the kill: nothing was tested"
        assert_ok(cli(root, out))
        assert stored_paths(out) == [f for f in files if "zz_bad" not in f], shards_seen  # once each, in order
        m = json.loads((out / "manifest.json").read_text())
        assert m["num_samples"] + len(m["failures"]) == len(files) == 122 and len(m["failures"]) == 2
        assert not list(out.glob(".*.tmp"))

