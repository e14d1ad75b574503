"""Checkpoints in the official V-JEPA single-file layout, written atomically and loaded strictly."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

PREFIX = "module.backbone."  # DDP around the official MultiMaskWrapper
_STRIP = ("module.backbone.", "module.", "backbone.")


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable or does not match the model; the message lists what differs."""


def add_prefix(state: dict, prefix: str = PREFIX) -> dict:
    """Keys as the official files hold them: `module.backbone.` for pretraining modules, `module.` for probes."""
    return {prefix + k: v for k, v in state.items()}


def strip_prefix(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        for p in _STRIP:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def atomic_save(obj, path: str | Path):
    """torch.save to a temp file beside `path`, fsync, then rename: a crash never leaves a partial file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_checkpoint(path: str | Path, weights_only: bool = True) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # unpickling errors have many types; say which file failed and why
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def load_strict(module: nn.Module, state: dict, what: str, source: str):
    """Load `state` (prefixes stripped) into `module`; any missing, unexpected or mis-shaped key is an error."""
    state = check_matches(module.state_dict(), state, what, source)
    module.load_state_dict(state, strict=True)


def check_matches(own: dict, state: dict, what: str, source: str) -> dict:
    """`state` with prefixes stripped, after checking its keys and shapes equal `own`'s (global shapes for sharded
    tensors); raises CheckpointError listing every difference."""
    state = strip_prefix(state)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                parts.append(f"{title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise CheckpointError(f"{source}: '{what}' does not match the model: " + "; ".join(parts))
    return state


def official_checkpoint(modules: dict, opt: dict, *, epoch: int, loss: float, batch_size: int, world_size: int,
                        lr: float, extra: dict | None = None, prefix: str = PREFIX) -> dict:
    """The official dict layout: each module's state dict under its name (`encoder`, `predictor`, `target_encoder`)
    with the official prefix; our resume state (exact step, data position) rides under `jepa_scale`."""
    ckpt = {name: add_prefix(state, prefix) for name, state in modules.items()}
    ckpt.update(opt=opt, scaler=None, epoch=epoch, loss=loss, batch_size=batch_size, world_size=world_size, lr=lr)
    if extra is not None:
        ckpt["jepa_scale"] = extra
    return ckpt
