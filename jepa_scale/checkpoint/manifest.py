"""A checkpoint counts only once its manifest exists: every file of every rank, with its size and sha256, written
last (after all ranks finished), atomically. Verifying it finds a part a dying rank left truncated, a missing
file, or a flipped bit, before anything is loaded."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "MANIFEST.json"
CHUNK = 1 << 22


def digest(path: Path) -> list:
    """[size, sha256 hex] of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return [path.stat().st_size, h.hexdigest()]


def checkpoint_files(folder: Path) -> list[str]:
    """The files a checkpoint folder holds (relative, sorted), its manifest excluded."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def share(files: list[str], rank: int, world_size: int) -> list[str]:
    """The files rank `rank` hashes (or checks): every rank takes its part, so hashing runs in parallel."""
    return files[rank::world_size]


def write_manifest(folder: Path, files: dict, meta: dict):
    """files: relative path -> [size, sha256]; meta: what a resume needs to know before loading (step, format,
    world size, batch size)."""
    tmp = folder / f".{MANIFEST}.tmp"
    with open(tmp, "w") as f:
        json.dump({**meta, "files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def problems(folder: Path, manifest: dict, names: list[str], checksums: bool = True) -> list[str]:
    """What is wrong with the listed files of a checkpoint against its manifest (empty: they are intact)."""
    out = []
    for name in names:
        size, sha = manifest["files"][name]
        path = folder / name
        if not path.is_file():
            out.append(f"{name} is missing")
        elif path.stat().st_size != size:
            out.append(f"{name} has {path.stat().st_size} bytes, the manifest says {size}")
        elif checksums and digest(path)[1] != sha:
            out.append(f"{name} does not match its checksum")
    return out
