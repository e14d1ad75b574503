"""CSV video lists -> webdataset shards + manifest. Every input row ends in a shard or in `failures`."""
from __future__ import annotations

import collections
import json
import multiprocessing as mp
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from jepa_scale.data.csv_source import DataError, read_video_csv
from jepa_scale.data.pyav_decoder import VideoError
from jepa_scale.data.shards.transcode import TranscodeOptions, transcode
from jepa_scale.data.shards.writer import ShardWriter

FAILURES = "failures.jsonl"  # the journal of rows that did not become samples (kept across resumed runs)
MANIFEST = "manifest.json"


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


def _work(job_opts):
    job, opts = job_opts
    try:
        data, meta = transcode(job.path, opts)
        return job, data, meta, None
    except VideoError as e:
        return job, None, None, e.reason
    except Exception as e:  # a worker must never take the whole run down: the row is recorded as failed
        return job, None, None, f"unexpected {type(e).__name__}: {e}"


def _done_rows(out: Path, name: str) -> tuple[set[int], int]:
    """Rows of dataset `name` already in finished shards or in the failure journal; and the next shard index."""
    rows, shards = set(), sorted(out.glob(f"{name}-*.tar"))
    for tar in shards:
        rows |= {s["line"] for s in json.loads(tar.with_suffix(".json").read_text())["samples"]}
    journal = out / FAILURES
    if journal.exists():
        rows |= {f["line"] for f in map(json.loads, journal.read_text().splitlines()) if f["dataset"] == name}
    return rows, len(shards)


def _components(job: Job, data: bytes, meta: dict) -> tuple[dict, dict]:
    info = dict(label=job.label, path=job.path, **{k: meta[k] for k in ("fps", "num_frames", "duration", "width",
                                                                         "height", "codec")})
    vinfo = np.array([meta["num_frames"], job.label, meta["width"], meta["height"]], dtype="<i4").tobytes()
    comps = {"mp4": data, "json": json.dumps(info).encode(), "cls": str(job.label).encode(), "vinfo": vinfo}
    return comps, dict(info, line=job.line)


def make_shards(csvs: list[str], out_dir: str, opts: TranscodeOptions = TranscodeOptions(),
                weights: list[float] | None = None, shard_size_mb: float = 256, workers: int = 1,
                progress: bool = True) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # a shard an interrupted run did not finish
        stale.unlink()
    if weights is not None and len(weights) != len(csvs):
        raise DataError(f"{len(weights)} weights for {len(csvs)} CSV files")
    names = _dataset_names(csvs)
    journal = open(out / FAILURES, "a", buffering=1)
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
    manifest = build_manifest(out, names, csvs, weights, opts)
    manifest["videos_per_s"] = done_now / max(1e-9, time.perf_counter() - t0)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _run_jobs(jobs, opts, writer, journal, workers, progress, desc) -> int:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=f"shards {desc}", unit="video", disable=not progress)
    work = ((j, opts) for j in jobs)
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    results = pool.imap(_work, work, chunksize=1) if pool else map(_work, work)
    try:
        for job, data, meta, reason in results:
            if reason is None:
                comps, record = _components(job, data, meta)
                writer.add(f"{job.dataset}-{job.line:09d}", comps, record)
            else:
                journal.write(json.dumps({"dataset": job.dataset, "line": job.line, "path": job.path,
                                          "reason": reason}) + "\n")
            bar.update(1)
    finally:
        if pool:
            pool.terminate()
        bar.close()
    return len(jobs)


def build_manifest(out: Path, names: list[str], csvs: list[str], weights, opts: TranscodeOptions) -> dict:
    failures = [json.loads(x) for x in (out / FAILURES).read_text().splitlines()] if (out / FAILURES).exists() else []
    datasets, classes, all_shards = [], collections.Counter(), []
    for i, (name, csv) in enumerate(zip(names, csvs)):
        shards = sorted(p.name for p in out.glob(f"{name}-*.tar"))
        n = 0
        for s in shards:
            side = json.loads((out / s).with_suffix(".json").read_text())
            n += side["num_samples"]
            classes.update(str(x["label"]) for x in side["samples"])
        datasets.append({"name": name, "csv": str(csv), "weight": None if weights is None else weights[i],
                         "shards": shards, "num_samples": n})
        all_shards += shards
    return {"version": 1, "shards": all_shards, "num_samples": sum(d["num_samples"] for d in datasets),
            "classes": dict(sorted(classes.items(), key=lambda kv: int(kv[0]))), "datasets": datasets,
            "failures": failures, "options": asdict(opts)}
