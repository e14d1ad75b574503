"""The checkpoints of one run: `<run>/checkpoints/step-NNNNNNNN/` folders, each complete once its manifest exists.

Whatever the engine, a checkpoint is written into its step folder by every rank, then the manifest (every file's
size and sha256) last; `latest` names the newest complete one for people and other tools, but nothing trusts it:
a resume scans the folders, newest first, and verifies. Folders written before manifests existed (`latest` naming
a folder without one) are read as they were, unverified."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from jepa_scale.checkpoint.manifest import MANIFEST, read_manifest

LATEST = "latest"
EXTRA = "jepa_scale.json"  # our resume state (step, data positions), beside the engine's files
OFFICIAL_FILE = "checkpoint.pth.tar"  # the one file of the official format inside a step folder
FORMAT_ENGINES = {"official": "single or ddp", "dcp": "fsdp", "deepspeed": "deepspeed"}
_STEP = re.compile(r"^step-(\d{8})$")


@dataclass(frozen=True)
class Stored:
    step: int
    path: Path
    manifest: dict | None  # None: a folder from before manifests (legacy, unverified)


class CheckpointStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def _step_folders(self) -> list[tuple[int, Path]]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
        return sorted(found, reverse=True)

    def complete(self) -> list[Stored]:
        """Checkpoints whose manifest exists, newest first (their files are verified by the reader)."""
        return [Stored(s, p, m) for s, p in self._step_folders() if (m := read_manifest(p)) is not None]

    def legacy(self) -> Stored | None:
        """The folder `latest` names when it has no manifest (written before manifests existed)."""
        pointer = self.root / LATEST
        if not pointer.is_file():
            return None
        path = self.root / pointer.read_text().strip()
        m = _STEP.match(path.name)
        if not m or not path.is_dir() or (path / MANIFEST).exists():
            return None
        return Stored(int(m.group(1)), path, None)

    def any(self) -> bool:
        return bool(self._step_folders())

    def point_latest(self, path: Path):
        tmp = self.root / f".{LATEST}.tmp"
        tmp.write_text(path.name)
        os.replace(tmp, self.root / LATEST)

    def prune(self, keep: int) -> list[Path]:
        """Remove complete checkpoints beyond the newest `keep`, and incomplete ones older than the newest
        complete one (rank 0, after a save)."""
        complete = self.complete()
        if not complete:
            return []
        doomed = [c.path for c in complete[keep:]]
        newest = complete[0].step
        doomed += [p for s, p in self._step_folders() if s < newest and read_manifest(p) is None]
        legacy = self.legacy()
        for path in doomed:
            if legacy is None or path != legacy.path:
                shutil.rmtree(path, ignore_errors=True)
        return doomed

    def stale(self) -> list[Path]:
        """What interrupted saves of this run left: step folders without a manifest (except a legacy one) and
        temporaries (`.*.tmp` entries)."""
        legacy = self.legacy()
        out = [p for _, p in self._step_folders() if read_manifest(p) is None and (legacy is None or p != legacy.path)]
        if self.root.is_dir():
            out += [p for p in self.root.iterdir() if p.name.startswith(".") and ".tmp" in p.name]
        return out


def write_extra(folder: Path, extra: dict):
    """Our resume state as JSON, readable by people; bytes (DALI's reader checkpoints) as base64."""
    def encode(obj):
        if isinstance(obj, bytes):
            return {"__bytes__": base64.b64encode(obj).decode()}
        raise TypeError(f"{type(obj).__name__} in the resume state")
    (folder / EXTRA).write_text(json.dumps(extra, default=encode))


def read_extra(folder: Path) -> dict:
    def decode(obj):
        return base64.b64decode(obj["__bytes__"]) if set(obj) == {"__bytes__"} else obj
    return json.loads((folder / EXTRA).read_text(), object_hook=decode)
