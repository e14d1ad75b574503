"""CSV video lists -> webdataset shards + manifest. Every input row ends in a shard or in `failures`.

An output folder belongs to one run: its first act is to write `make_shards.json` (the CSVs' sha256 and every
option that changes the output). A rerun continues that run only with the same inputs; any other folder that is
not empty is refused untouched.
"""
from __future__ import annotations

import collections
import hashlib
import json
import multiprocessing as mp
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from jepa_scale.data.csv_source import DataError, read_video_csv
from jepa_scale.data.pyav_decoder import VideoError
from jepa_scale.data.shards.transcode import AUDIO_MISSING, LEGACY_VALUES, TranscodeOptions, audio_member, transcode
from jepa_scale.data.shards.writer import ShardWriter, is_shard_temp, shard_files, shard_index, temp_name

FAILURES = "failures.jsonl"  # the journal of rows that did not become samples (kept across resumed runs)
MANIFEST = "manifest.json"
STATE = "make_shards.json"  # written before anything else: marks the folder as ours and what the run was made of
STATE_VERSION = 1
AUDIO_OPTIONS = ("audio", "audio_rate", "audio_missing")  # TranscodeOptions' fields that --audio brings
# a sample's optional metadata, kept in its json when transcode gives it: keyframes (display indices; the loader
# skips groups of pictures a clip has no frame in) and keep_every's record of the original frames
OPTIONAL_META = ("keyframes", "keep_every", "source_frames", "source_fps")


@dataclass(frozen=True)
class Job:
    dataset: str
    line: int
    path: str
    label: int


def _dataset_names(csvs: list[str]) -> list[str]:
    """Safe, unique shard prefixes from the CSV names (nothing from a CSV can steer where files go)."""
    names, seen = [], collections.Counter()
    for c in csvs:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(c).stem).strip("_") or "data"
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def _sha256(csv: str) -> str:
    path = Path(csv)
    if not path.is_file():
        raise DataError(f"{path}: video list not found")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_state(csvs: list[str], names: list[str], opts: TranscodeOptions, weights, shard_size_mb: float) -> dict:
    """What a rerun must match: the CSVs' bytes (line numbers key the resume) and every option that changes the
    output (not --workers). As JSON would give it back, so it compares equal to the stored copy. The audio options
    are left out without --audio (they change nothing then), so such a run's state is what it was before they
    existed and folders made then continue."""
    options = asdict(opts)
    if not opts.audio:
        options = {k: v for k, v in options.items() if k not in AUDIO_OPTIONS}
    # likewise options added later, at the value that gives what was made before they existed
    options = {k: v for k, v in options.items() if k not in LEGACY_VALUES or v != LEGACY_VALUES[k]}
    state = {"make_shards": STATE_VERSION,
             "csvs": [{"csv": str(c), "name": n, "sha256": _sha256(c)} for c, n in zip(csvs, names)],
             "options": {**options, "shard_size_mb": shard_size_mb, "weights": weights}}
    return json.loads(json.dumps(state))


def _write_atomic(path: Path, text: str):
    """`path` appears whole or not at all, even under kill -9."""
    tmp = path.with_name(temp_name(path.name))
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _claim_out(out: Path, state: dict):
    """Make `out` this run's folder: a new or empty one gets the state file first; a folder of an earlier run must
    have been made with the same inputs; anything else is refused before a single file is touched."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: is a file, not a folder")
    if (out / STATE).is_file():
        _check_same_run(out, _read_state(out / STATE), state)
        return
    # a run killed while writing its state file leaves only that file's temporary: still an empty folder
    others = sorted({p.name for p in out.iterdir()} - {temp_name(STATE)}) if out.exists() else []
    if others:
        raise DataError(f"--out {out}: refusing a folder that is not empty and not a make_shards run (no {STATE}; "
                        f"it holds {others[0]!r}{' and more' if len(others) > 1 else ''}): use a new or empty "
                        f"folder, or, to continue a run, the same command that created its folder")
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / STATE, json.dumps(state, indent=1))


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable make_shards state ({e}): use a new --out") from None
    if not isinstance(state, dict) or "make_shards" not in state:
        raise DataError(f"{path}: not written by make_shards (no 'make_shards' key): use a new --out")
    return state


# a state's inputs: its key -> (the key of each entry's source, the flag that gives them, what they are)
INPUTS = {"csvs": ("csv", "--csv", "CSV"), "images": ("images", "--images", "image folder")}


def _inputs(state: dict) -> str:
    """The key of `state`'s inputs: `csvs` (video runs) or `images` (make_image_shards runs)."""
    return "images" if "images" in state else "csvs"


def _check_same_run(out: Path, first: dict, now: dict):
    diffs = _differences(first, now)
    if diffs:
        what = "CSV files" if _inputs(now) == "csvs" else "image folder"
        raise DataError(f"--out {out} holds a run made from other inputs: {'; '.join(diffs)}; to continue it, "
                        f"rerun the command that created it on the same {what}; otherwise use a new --out")


def _differences(first: dict, now: dict) -> list[str]:
    if first["make_shards"] != now["make_shards"]:
        return [f"{STATE}: version {first['make_shards']}, this make_shards writes version {now['make_shards']}"]
    key, key_was = _inputs(now), _inputs(first)
    src, flag, what = INPUTS[key]
    was, became = first.get(key_was, []), now[key]
    if key_was != key:  # a video run continued with --images, or the other way round
        old_src, old_flag, _ = INPUTS[key_was]
        return [f"first run {old_flag} {' '.join(c[old_src] for c in was)}, "
                f"this run {flag} {' '.join(c[src] for c in became)}"]
    if [c["name"] for c in was] != [c["name"] for c in became]:
        return [f"{flag}: first run {' '.join(c[src] for c in was)}, this run {' '.join(c[src] for c in became)}"]
    diffs = [f"{b[src]}: {what} changed since the first run (sha256 {a['sha256'][:16]}... then, "
             f"{b['sha256'][:16]}... now)" for a, b in zip(was, became) if a["sha256"] != b["sha256"]]
    old, new = first.get("options", {}), now["options"]
    for key in list(new) + [k for k in old if k not in new]:  # in the command line's order
        if old.get(key) != new.get(key):
            diffs.append(f"{_flag(key)}: first run {_shown(key, old.get(key))}, this run {_shown(key, new.get(key))}")
    return diffs


NEGATED = {"fastdecode": "--no-fastdecode", "upscale": "--no-upscale"}  # options whose flag turns them off


def _flag(key: str) -> str:
    """The make_shards.py option that sets `key` (messages speak the command line's language)."""
    return NEGATED.get(key, "--" + key.replace("_", "-"))


def _shown(key: str, value) -> str:
    if key in NEGATED and value is not None:
        value = not value  # the flag turns it off
    if isinstance(value, bool):
        return "given" if value else "not given"
    if value is None:
        return "not given"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _remove_own_temporaries(out: Path, names: list[str], also: tuple[str, ...] = ()):
    """Files an interrupted run of ours left half-written: only names our writers use, never a user's `*.tmp`.
    `also`: other files the run writes atomically."""
    ours = {temp_name(STATE), temp_name(MANIFEST), *map(temp_name, also)}
    for p in out.iterdir():
        if p.name in ours or is_shard_temp(p.name, names):
            p.unlink()


def _open_journal(out: Path):
    """The failure journal, for appending. A line a kill cut short is dropped (its row is simply redone), so the
    journal stays one JSON object a line."""
    path = out / FAILURES
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", buffering=1)


def read_journal(out: Path) -> list[dict]:
    """The failure journal's rows, in the order they were recorded."""
    path = out / FAILURES
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _work(job_opts):
    """-> (job, members: extension -> bytes, metadata, None) or (job, None, None, the reason it failed)."""
    job, opts = job_opts
    try:
        data, meta = transcode(job.path, opts)
        media = {"mp4": data}
        if opts.audio:
            media["wav"], silent = audio_member(job.path, meta, opts)
            meta.update(audio_rate=opts.audio_rate, silent_audio=silent)
        return job, media, meta, None
    except VideoError as e:
        return job, None, None, e.reason
    except Exception as e:  # a worker must never take the whole run down: the row is recorded as failed
        return job, None, None, f"unexpected {type(e).__name__}: {e}"


def _done_rows(out: Path, name: str, field: str = "line") -> tuple[set, int]:
    """Rows of dataset `name` already in finished shards or in the failure journal, by their `field` (the CSV
    line; for images, the path); and the next shard index."""
    rows, shards = set(), shard_files(out, name)
    for tar in shards:
        rows |= {s[field] for s in json.loads(tar.with_suffix(".json").read_text())["samples"]}
    rows |= {f[field] for f in read_journal(out) if f["dataset"] == name}
    # after the highest index, not the count: a shard deleted by hand must not make us overwrite a later one
    return rows, shard_index(shards[-1]) + 1 if shards else 0


def _components(job: Job, media: dict[str, bytes], meta: dict) -> tuple[dict, dict]:
    """The sample's tar members (media: `mp4`, and `wav` with --audio) and its sidecar record. The sidecar's
    `members` (offsets) are read back from the tar by the writer, so they always list exactly these."""
    keys = ("fps", "num_frames", "duration", "width", "height", "codec") + (
        ("audio_rate", "silent_audio") if "wav" in media else ()) + tuple(k for k in OPTIONAL_META if k in meta)
    info = dict(label=job.label, path=job.path, **{k: meta[k] for k in keys})
    vinfo = np.array([meta["num_frames"], job.label, meta["width"], meta["height"]], dtype="<i4").tobytes()
    comps = {**media, "json": json.dumps(info).encode(), "cls": str(job.label).encode(), "vinfo": vinfo}
    return comps, dict(info, line=job.line)


def make_shards(csvs: list[str], out_dir: str, opts: TranscodeOptions = TranscodeOptions(),
                weights: list[float] | None = None, shard_size_mb: float = 256, workers: int = 1,
                progress: bool = True) -> dict:
    """Shard `csvs` into `out_dir`, or continue the interrupted run there. Raises DataError, with nothing written,
    when `out_dir` is not empty and not a run of ours, or is a run made from other CSVs or options."""
    out = Path(out_dir)
    if weights is not None and len(weights) != len(csvs):
        raise DataError(f"{len(weights)} weights for {len(csvs)} CSV files")
    if opts.audio_missing not in AUDIO_MISSING:
        raise DataError(f"audio_missing {opts.audio_missing!r}: must be one of {', '.join(AUDIO_MISSING)}")
    if opts.audio and opts.audio_rate <= 0:
        raise DataError(f"audio_rate {opts.audio_rate}: must be a positive number of Hz")
    names = _dataset_names(csvs)
    state = run_state(csvs, names, opts, weights, shard_size_mb)
    _claim_out(out, state)
    _remove_own_temporaries(out, names)
    journal = _open_journal(out)
    t0, done_now = time.perf_counter(), 0
    for name, csv in zip(names, csvs):
        finished, next_shard = _done_rows(out, name)
        records, bad = read_video_csv(csv)
        for b in bad:
            if b.line not in finished:
                journal.write(json.dumps({"dataset": name, "line": b.line, "path": b.text, "reason": b.reason}) + "\n")
        jobs = [Job(name, int(r.source.rsplit(":", 1)[1]), r.path, r.label) for r in records]
        jobs = [j for j in jobs if j.line not in finished]
        writer = ShardWriter(out, name, int(shard_size_mb * 2 ** 20), start_index=next_shard)
        done_now += _run_jobs(jobs, opts, writer, journal, workers, progress, desc=name)
        writer.close()
    journal.close()
    manifest = build_manifest(out, names, csvs, weights, opts, state)
    manifest["videos_per_s"] = done_now / max(1e-9, time.perf_counter() - t0)
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))  # a reader never sees half a manifest
    return manifest


def _run_jobs(jobs, opts, writer, journal, workers, progress, desc) -> int:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=f"shards {desc}", unit="video", disable=not progress)
    work = [(j, opts) for j in jobs]
    # forkserver: workers start clean, not as forks of a process whose decoder threads may hold locks (a forked
    # FFmpeg can abort); and a worker that dies breaks the pool with an error instead of a wait without end
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver")) if workers > 1 else None
    results = pool.map(_work, work, chunksize=1) if pool else map(_work, work)
    try:
        for job, media, meta, reason in results:
            if reason is None:
                comps, record = _components(job, media, meta)
                writer.add(f"{job.dataset}-{job.line:09d}", comps, record)
            else:
                journal.write(json.dumps({"dataset": job.dataset, "line": job.line, "path": job.path,
                                          "reason": reason}) + "\n")
            bar.update(1)
    except BrokenProcessPool as e:
        raise DataError(f"a make_shards worker died ({e}); what was written is kept: run the same command again "
                        f"to continue") from None
    finally:
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return len(jobs)


def build_manifest(out: Path, names: list[str], csvs: list[str], weights, opts: TranscodeOptions,
                   state: dict | None = None) -> dict:
    failures = read_journal(out)
    datasets, classes, all_shards, silent = [], collections.Counter(), [], []
    for i, (name, csv) in enumerate(zip(names, csvs)):
        shards = [p.name for p in shard_files(out, name)]
        n = 0
        for s in shards:
            side = json.loads((out / s).with_suffix(".json").read_text())
            n += side["num_samples"]
            classes.update(str(x["label"]) for x in side["samples"])
            # --audio-missing silence: the rows whose video had no sound and got a silent wav
            silent += [{"dataset": name, "line": x["line"], "path": x["path"]} for x in side["samples"]
                       if x.get("silent_audio")]
        datasets.append({"name": name, "csv": str(csv), "weight": None if weights is None else weights[i],
                         "shards": shards, "num_samples": n,
                         "sha256": state["csvs"][i]["sha256"] if state else None})
        all_shards += shards
    return {"version": 1, "shards": all_shards, "num_samples": sum(d["num_samples"] for d in datasets),
            "classes": dict(sorted(classes.items(), key=lambda kv: int(kv[0]))), "datasets": datasets,
            "failures": failures, "silent_audio": silent, "num_silent_audio": len(silent), "options": asdict(opts),
            "make_shards": STATE_VERSION, "shard_size_mb": state["options"]["shard_size_mb"] if state else None}
