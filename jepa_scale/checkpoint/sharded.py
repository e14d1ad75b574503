"""torch.distributed.checkpoint (DCP) state of a sharded engine, written into and read from one checkpoint folder
(every rank writes its own shards; the checkpointer's manifest decides when the folder counts)."""
from __future__ import annotations

from pathlib import Path

import torch.distributed as dist
import torch.distributed.checkpoint as dcp


def save_dcp(path: str | Path, state: dict):
    dcp.save(state, checkpoint_id=str(path), no_dist=not dist.is_initialized())


def load_dcp(path: str | Path, state: dict):
    """Fill `state` (the engine's sharded state dict, same structure as saved) in place."""
    dcp.load(state, checkpoint_id=str(path), no_dist=not dist.is_initialized())
