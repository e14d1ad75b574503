"""Probe checkpoints in the official frozen-eval layouts, so our files and the released probes read the same way.

- v1 (V-JEPA `{write_tag}-latest.pth.tar`): `classifier` (one DDP state dict, keys `module.pooler...`,
  `module.linear...`), `opt`, `scaler`, `epoch`, `batch_size`, `world_size`, `lr`.
- v2 (V-JEPA 2 `latest.pt`): `classifiers` (a list of DDP state dicts, one per head of the grid), `opt` (a list),
  `scaler` (a list or None), `epoch`, `batch_size`, `world_size`; no `lr` (each head has its own schedule).

Our resume state rides under `jepa_scale`, which official readers ignore.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from jepa_scale.checkpoint.official import CheckpointError, add_prefix, load_strict, strip_prefix

DDP_PREFIX = "module."
_KEYS = {"v1": "classifier", "v2": "classifiers"}


def _one_per_head(name: str, items: Sequence | None, n: int) -> list | None:
    if items is None:
        return None
    if len(items) != n:
        raise ValueError(f"{name}: {len(items)} given for {n} classifier(s)")
    return list(items)


def probe_checkpoint(layout: str, classifier_states: Sequence[dict], opts: Sequence[dict] | None, *, epoch: int,
                     batch_size: int, world_size: int, lr: float | None, scalers: Sequence[dict] | None = None,
                     extra: dict | None = None) -> dict:
    """The dict to torch.save: states get the DDP `module.` prefix; `opts` / `scalers` (None, or one per head).

    v1 holds exactly one classifier and writes `lr`; v2 holds any number and has no `lr` key."""
    if layout not in _KEYS:
        raise ValueError(f"unknown probe layout {layout!r}; choose one of {tuple(_KEYS)}")
    n = len(classifier_states)
    if n == 0 or (layout == "v1" and n != 1):
        raise ValueError(f"a {layout} probe checkpoint holds {'exactly one' if layout == 'v1' else 'at least one'} "
                         f"classifier, got {n}")
    opts, scalers = _one_per_head("opts", opts, n), _one_per_head("scalers", scalers, n)
    states = [add_prefix(s, DDP_PREFIX) for s in classifier_states]
    if layout == "v1":
        ckpt = {"classifier": states[0], "opt": opts[0] if opts else None,
                "scaler": scalers[0] if scalers else None,
                "epoch": epoch, "batch_size": batch_size, "world_size": world_size, "lr": lr}
    else:
        ckpt = {"classifiers": states, "opt": opts, "scaler": scalers, "epoch": epoch, "batch_size": batch_size,
                "world_size": world_size}
    if extra is not None:
        ckpt["jepa_scale"] = extra
    return ckpt


def probe_states(ckpt: dict, source: str) -> tuple[str, list[dict], list[dict] | None]:
    """(layout, classifier state dicts with `module.` stripped, optimizer states or None) of a probe checkpoint,
    the layout told by its keys: `classifier` -> v1, `classifiers` -> v2."""
    has = [layout for layout, key in _KEYS.items() if key in ckpt]
    if len(has) != 1:
        why = "has both 'classifier' and 'classifiers'" if has else "has neither 'classifier' (V-JEPA) nor " \
                                                                   "'classifiers' (V-JEPA 2)"
        raise CheckpointError(f"{source}: not a probe checkpoint: it {why}; its keys: {sorted(map(str, ckpt))}")
    layout = has[0]
    raw = [ckpt["classifier"]] if layout == "v1" else ckpt["classifiers"]
    if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(s, dict) for s in raw):
        raise CheckpointError(f"{source}: '{_KEYS[layout]}' should hold state dict(s), got {type(raw).__name__}")
    opts = ckpt.get("opt")
    if opts is not None and layout == "v1":
        opts = [opts]
    return layout, [strip_prefix(s) for s in raw], opts


def load_probe_checkpoint(classifiers: Sequence[nn.Module], ckpt: dict, source: str) -> tuple[str, list | None]:
    """Load every classifier state of `ckpt` strictly into `classifiers` (same count, same order); returns the
    layout and the optimizer states (None if the file has none)."""
    layout, states, opts = probe_states(ckpt, source)
    if len(states) != len(classifiers):
        raise CheckpointError(f"{source}: {len(states)} classifier(s) in the file, {len(classifiers)} in the model")
    for i, (module, state) in enumerate(zip(classifiers, states)):
        load_strict(module, state, _KEYS[layout] if layout == "v1" else f"classifiers[{i}]", source)
    return layout, opts
