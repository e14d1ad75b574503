"""An ImageFolder split -> webdataset image shards + classes.json + manifest.json; and back to records.

Each sample holds the image file's bytes unchanged, under its own extension (`jpg`, `png`, ...), and `cls`, its
label as text. Only images that decode are kept; every other file the scan found is in the manifest's `failures`
with its reason: `num_samples + len(failures)` is the number of files scanned. Labels and class names are the
ImageFolder ones (see `scan_image_folder`).

The output folder belongs to one run, as for videos (`make.py`): `make_shards.json` is written first, with the
folder's sha256 and the options that change the output, and a rerun with the same folder and options continues
an interrupted run (finished shards and journalled failures are kept, every image ends up in the shards exactly
once); a rerun with others, or a folder that is not empty and not a run of ours, is refused untouched.

The sha256 of an image folder is that of its sorted list of (path relative to the root, with `/`, size in bytes)
over the files the scan finds, one `path<TAB>size<LF>` line each: it changes when an image is added, removed,
renamed or changes size, and costs a `stat`, not a read, per file (an image rewritten in place to the same size
goes unnoticed).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from jepa_scale.data.csv_source import DataError
from jepa_scale.data.image_folder import ImageError, ImageRecord, decode_image, scan_image_folder
from jepa_scale.data.shards.make import (MANIFEST, STATE_VERSION, _claim_out, _dataset_names, _done_rows,
                                         _open_journal, _remove_own_temporaries, _write_atomic, read_journal)
from jepa_scale.data.shards.writer import ShardWriter, shard_files

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
    except Exception as e:  # a worker must never take the whole run down: the file is recorded as failed
        return None, f"unexpected {type(e).__name__}: {e}"


def folder_sha256(root: Path, paths: list[str]) -> str:
    """sha256 of the sorted (relative path, size) list of `paths` under `root` (see the module docstring)."""
    rows = sorted((Path(os.path.relpath(p, root)).as_posix(), os.stat(p).st_size) for p in paths)
    return hashlib.sha256("".join(f"{rel}\t{size}\n" for rel, size in rows).encode()).hexdigest()


def image_run_state(root: Path, name: str, paths: list[str], shard_size_mb: float) -> dict:
    """What a rerun must match (as JSON gives it back): the folder's listing and the options (not --workers)."""
    state = {"make_shards": STATE_VERSION,
             "images": [{"images": str(root), "name": name, "sha256": folder_sha256(root, paths)}],
             "options": {"shard_size_mb": shard_size_mb}}
    return json.loads(json.dumps(state))


def make_image_shards(image_folder_split_root: str, out_dir: str, shard_size_mb: float = 256,
                      progress: bool = True, workers: int = 1) -> dict:
    """Shard one ImageFolder split (e.g. `imagenet/train`) into `out_dir`, or continue the interrupted run there;
    returns the manifest. Raises DataError, with nothing written, when `out_dir` is not empty and not a run of
    ours, or is a run made from another folder (or the same one changed) or other options."""
    from tqdm import tqdm

    root, out = Path(image_folder_split_root), Path(out_dir)
    records, classes = scan_image_folder(root)  # before touching `out`: a wrong root writes nothing
    name = _dataset_names([str(root)])[0]
    state = image_run_state(root, name, [p for p, _ in records], shard_size_mb)
    _claim_out(out, state)
    _remove_own_temporaries(out, [name], also=(CLASSES,))
    journal = _open_journal(out)  # first: it drops a line a kill cut short, before the done rows are read
    finished, next_shard = _done_rows(out, name, field="path")
    todo = [(n, path, label) for n, (path, label) in enumerate(records)
            if os.path.relpath(path, root) not in finished]
    writer = ShardWriter(out, name, int(shard_size_mb * 2 ** 20), start_index=next_shard)
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver")) if workers > 1 else None
    paths = [path for _, path, _ in todo]
    checked = pool.map(_check, paths, chunksize=64) if pool else map(_check, paths)
    bar = tqdm(zip(todo, checked), total=len(todo), desc=f"image shards {name}", unit="image", disable=not progress)
    t0 = time.perf_counter()
    try:
        for (n, path, label), (data, info) in bar:
            rel = os.path.relpath(path, root)
            if data is None:
                journal.write(json.dumps({"dataset": name, "path": rel, "reason": info}) + "\n")
                continue
            ext = Path(path).suffix.lower().lstrip(".")
            writer.add(f"{name}-{n:09d}", {ext: data, "cls": str(label).encode()},
                       {"label": label, "path": rel, "ext": ext, "width": info[0], "height": info[1]})
        writer.close()
    except BrokenProcessPool as e:
        raise DataError(f"an image shard worker died ({e}); what was written is kept: run the same command again "
                        f"to continue") from None
    finally:
        bar.close()
        journal.close()
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
    manifest = _manifest(out, root, name, classes, len(records), state)
    manifest["images_per_s"] = len(todo) / max(1e-9, time.perf_counter() - t0)
    _write_atomic(out / CLASSES, json.dumps(classes, indent=1))
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))  # last: its presence means the folder is whole
    return manifest


def _manifest(out: Path, root: Path, name: str, classes: list[str], scanned: int, state: dict) -> dict:
    """From what is on disk (the shards of every run into `out` and the journal), with the accounting checked."""
    failures = [f for f in read_journal(out) if f["dataset"] == name]
    shards = [p.name for p in shard_files(out, name)]
    per_class, paths = [0] * len(classes), []
    for shard in shards:
        for s in json.loads((out / shard).with_suffix(".json").read_text())["samples"]:
            per_class[s["label"]] += 1
            paths.append(s["path"])
    paths += [f["path"] for f in failures]
    if len(paths) != scanned or len(set(paths)) != scanned:
        raise DataError(f"--out {out}: its shards and {len(failures)} failures account for {len(set(paths))} "
                        f"distinct files ({len(paths)} entries), the scan of {root} found {scanned} (were shards "
                        f"removed or added by hand?); use a new --out")
    kept = sum(per_class)
    dataset = {"name": name, "source": str(root), "sha256": state["images"][0]["sha256"], "shards": shards,
               "num_files": scanned, "num_samples": kept, "num_failures": len(failures)}
    return {"version": 1, "kind": KIND, "root": str(root), "shards": shards, "num_samples": kept,
            "classes": classes, "samples_per_class": per_class, "datasets": [dataset], "failures": failures,
            "options": state["options"], "make_shards": STATE_VERSION,
            "shard_size_mb": state["options"]["shard_size_mb"]}


def read_image_shards(folder: str | Path) -> tuple[list[ImageRecord], list[str]]:
    """(records, classes): each record points at its image's bytes inside a shard (decode with decode_image).
    Reads the manifests of this version and the earlier ones (without `datasets`, `options`, `make_shards`)."""
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
