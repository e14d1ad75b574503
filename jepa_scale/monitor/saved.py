"""What autograd keeps for backward, measured: the bytes of the unique storages the tensors saved inside a block
hold (a view keeps its whole storage alive, and two views of one storage cost it once). The planner's activation
model (`saved_bytes_per_token` of a model's units) is checked against it. A measuring tool for tests and benches;
on the meta device it measures shapes only, as on a real one."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch


def _storage_key(t: torch.Tensor):
    # the StorageImpl's address: unique per storage on every device, the meta one included (data_ptr is 0 there)
    return t.untyped_storage()._cdata


@dataclass
class SavedBytes:
    """Filled while `saved_tensors` runs: total bytes and each counted storage's (shape, dtype, bytes)."""
    bytes: int = 0
    storages: list = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False)

    def add(self, t: torch.Tensor):
        key = _storage_key(t)
        if key not in self._seen:
            self._seen.add(key)
            n = t.untyped_storage().nbytes()
            self.bytes += n
            self.storages.append((tuple(t.shape), t.dtype, n))


@contextlib.contextmanager
def saved_tensors(exclude=()):
    """Count the storages autograd saves in the block, leaving out those of `exclude` (parameters: they exist
    whether or not anything is saved). Yields a SavedBytes, complete when the block ends."""
    out = SavedBytes()
    out._seen.update(_storage_key(t) for t in exclude)

    def pack(t):
        out.add(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield out


def measured_bytes_per_token(module: torch.nn.Module, inputs: tuple, tokens: int) -> float:
    """Bytes saved for backward by one forward of `module` on `inputs`, per token (`tokens` of them in the batch),
    its own parameters excluded. The inputs count when something saves them, as the planner counts a unit's input."""
    with saved_tensors(exclude=list(module.parameters())) as saved:
        module(*inputs)
    return saved.bytes / tokens
