"""An ImageFolder split -> webdataset image shards + classes.json + manifest.json; and back to records.

Each sample holds the image file's bytes unchanged, under its own extension (`jpg`, `png`, ...), and `cls`, its
label as text. Only images that decode are kept; every other file the scan found is in the manifest's `failures`
with its reason. Labels and class names are the ImageFolder ones (see `scan_image_folder`).

Unlike video sharding there is no resume: the output folder must be new or empty.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.image_folder import ImageError, ImageRecord, decode_image, scan_image_folder
from jepa_scale.data.shards.make import MANIFEST, _dataset_names, _write_atomic
from jepa_scale.data.shards.writer import ShardWriter

CLASSES = "classes.json"
KIND = "images"  # the manifest's `kind`: tells an image shard folder from a video one


def _check(path: str) -> tuple[bytes | None, tuple[int, int] | str]:
    """(bytes, (width, height)) of an image that decodes, else (None, reason)."""
    try:
        data = Path(path).read_bytes()
        h, w, _ = decode_image(data, name=path).shape
        return data, (w, h)
    except ImageError as e:
        return None, e.reason
    except OSError as e:
        return None, f"unreadable ({e})"


def _claim_empty(out: Path):
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"--out {out}: not a new or empty folder (image shards are written to a fresh one)")
    out.mkdir(parents=True, exist_ok=True)


def make_image_shards(image_folder_split_root: str, out_dir: str, shard_size_mb: float = 256,
                      progress: bool = True, workers: int = 1) -> dict:
    """Shard one ImageFolder split (e.g. `imagenet/train`) into `out_dir`; returns the manifest."""
    from tqdm import tqdm

    root, out = Path(image_folder_split_root), Path(out_dir)
    records, classes = scan_image_folder(root)  # before touching `out`: a wrong root writes nothing
    _claim_empty(out)
    prefix = _dataset_names([str(root)])[0]
    writer = ShardWriter(out, prefix, int(shard_size_mb * 2 ** 20))
    paths = [p for p, _ in records]
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver")) if workers > 1 else None
    checked = pool.map(_check, paths, chunksize=64) if pool else map(_check, paths)
    bar = tqdm(zip(records, checked), total=len(records), desc=f"image shards {prefix}", unit="image",
               disable=not progress)
    failures = []
    try:
        for n, ((path, label), (data, info)) in enumerate(bar):
            rel = os.path.relpath(path, root)
            if data is None:
                failures.append({"path": rel, "reason": info})
                continue
            ext = Path(path).suffix.lower().lstrip(".")
            writer.add(f"{prefix}-{n:09d}", {ext: data, "cls": str(label).encode()},
                       {"label": label, "path": rel, "ext": ext, "width": info[0], "height": info[1]})
    except BrokenProcessPool as e:
        raise DataError(f"an image shard worker died ({e}); rerun into a new --out") from None
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
    writer.close()
    manifest = _manifest(root, writer, classes, failures, shard_size_mb)
    _write_atomic(out / CLASSES, json.dumps(classes, indent=1))
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))  # last: its presence means the folder is whole
    return manifest


def _manifest(root: Path, writer: ShardWriter, classes: list[str], failures: list[dict], shard_size_mb) -> dict:
    kept = sum(s["num_samples"] for s in writer.finished)
    per_class = [0] * len(classes)
    for shard in writer.finished:
        for s in shard["samples"]:
            per_class[s["label"]] += 1
    return {"version": 1, "kind": KIND, "root": str(root), "shards": [s["shard"] for s in writer.finished],
            "num_samples": kept, "classes": classes, "samples_per_class": per_class, "failures": failures,
            "shard_size_mb": shard_size_mb}


def read_image_shards(folder: str | Path) -> tuple[list[ImageRecord], list[str]]:
    """(records, classes): each record points at its image's bytes inside a shard (decode with decode_image)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no image shard manifest (write one with data_tools/make_shards.py --images)")
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != KIND:
        raise DataError(f"{path}: a video shard manifest, not an image one (made without --images)")
    records = []
    for shard in manifest["shards"]:
        tar = folder / shard
        for s in json.loads(tar.with_suffix(".json").read_text())["samples"]:
            offset, size = s["members"][s["ext"]]
            records.append(ImageRecord(str(tar), int(s["label"]), f"{tar}:{s['key']}", offset, size))
    if not records:
        raise DataError(f"{folder}: no images in these shards")
    return records, list(manifest["classes"])
