"""Sharded checkpoints for sharded engines (torch.distributed.checkpoint), written so that a checkpoint counts only
once it is complete: every rank writes its shards into `.step-N.tmp/`, DCP's coordinator writes `.metadata` last,
rank 0 adds our `jepa_scale.json` (step, data positions), renames the folder to `step-N/` and only then points
`latest` at it (temp file + rename). A crash at any point leaves `latest` on the previous complete checkpoint."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from jepa_scale.checkpoint.official import CheckpointError

LATEST = "latest"
EXTRA = "jepa_scale.json"


def _barrier():
    if dist.is_initialized():
        dist.barrier()


def save_sharded(root: str | Path, step: int, state: dict, extra: dict, rank: int = 0) -> Path:
    root = Path(root)
    final, tmp = root / f"step-{step:08d}", root / f".step-{step:08d}.tmp"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted save left
    _barrier()
    dcp.save(state, checkpoint_id=str(tmp), no_dist=not dist.is_initialized())
    _barrier()
    if rank == 0:
        (tmp / EXTRA).write_text(json.dumps(extra))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / LATEST)
    _barrier()
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None when there is none."""
    root = Path(root)
    if not (root / LATEST).is_file():
        return None
    path = root / (root / LATEST).read_text().strip()
    if not (path / ".metadata").is_file() or not (path / EXTRA).is_file():
        raise CheckpointError(f"{root / LATEST} points at {path}, which is not a complete checkpoint")
    return path


def load_sharded(path: str | Path, state: dict) -> dict:
    """Fill `state` (the engine's sharded state dict, same structure as saved) in place; returns our extra data."""
    path = Path(path)
    dcp.load(state, checkpoint_id=str(path), no_dist=not dist.is_initialized())
    return json.loads((path / EXTRA).read_text())
