"""Frozen-encoder features computed once per (sample, view) and reused across epochs and across the probes of a grid:
the encoder pass dominates a probe's cost, and with the inputs fixed (no augmentation, deterministic clips) its
output never changes.

One split's cache is a folder `<cache>/<split>-<key>/`: a memory-mapped float32 array `[samples, outputs, tokens,
dim]`, one `done-r<rank>.npy` flag array per rank (a cache interrupted part-way resumes where it stopped), and
`meta.json`, written last, which marks it complete. The key hashes the backbone's weights and everything that
decides the inputs (config, data list, split), so a changed backbone or config never reads stale features; folders
of other keys for the same split are removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
FEATURES, LABELS, META = "features.f32", "labels.i64", "meta.json"


def tensors_digest(module: torch.nn.Module) -> str:
    """sha256 of every tensor of the module's state (names, dtypes, shapes, bytes), without copies."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()) if t.numel() else b"")
    return h.hexdigest()


def data_digest(path: str) -> str:
    """sha256 of a data list and of what it points at: a CSV's bytes plus each listed file's size and modification
    time (a video rewritten under the same name changes it); a folder's files, names and sizes, recursively."""
    p, h = Path(path), hashlib.sha256()
    if p.is_file():
        text = p.read_bytes()
        h.update(text)
        for line in text.decode(errors="replace").splitlines():
            media = _listed_file(line, p.parent)
            if media is not None:
                st = media.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
    elif p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _listed_file(line: str, folder: Path) -> Path | None:
    """The existing file a `path label` line names (relative paths as the CSV reader resolves them)."""
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2:
        return None
    for candidate in (Path(parts[0]), folder / parts[0]):
        if candidate.is_file():
            return candidate
    return None


def cache_key(encoder_digest: str, inputs: dict) -> str:
    """The key of one split: the backbone's weights and a JSON-able description of the inputs."""
    text = json.dumps({"encoder": encoder_digest, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class FeatureCache:
    def __init__(self, root: str | Path, split: str, key: str, num_samples: int, shape: tuple[int, int, int],
                 rank: int = 0, world_size: int = 1):
        self.folder = Path(root) / f"{split}-{key}"
        self.root, self.split, self.key = Path(root), split, key
        self.num_samples, self.shape = num_samples, tuple(shape)
        self.rank, self.world_size = rank, world_size
        self._array: np.memmap | None = None
        self._labels: np.memmap | None = None
        self._pending = np.zeros(0, np.int64)  # rows written since the flags were last saved

    def complete(self) -> bool:
        meta = self.folder / META
        if not meta.is_file():
            return False
        m = json.loads(meta.read_text())
        return m.get("key") == self.key and m.get("num_samples") == self.num_samples and \
            tuple(m.get("shape", ())) == self.shape

    def mine(self) -> np.ndarray:
        """The sample indices this rank computes (every world_size-th, from its rank)."""
        return np.arange(self.rank, self.num_samples, self.world_size)

    def prepare(self, barrier) -> np.ndarray:
        """Create (rank 0) or reopen the folder; the indices this rank still has to compute. Every rank calls it."""
        if self.rank == 0:
            for stale in self.root.glob(f"{self.split}-*"):
                if stale != self.folder:
                    log.info("feature cache: removing %s (another backbone or config)", stale)
                    shutil.rmtree(stale, ignore_errors=True)
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, size in ((FEATURES, self.num_samples * int(np.prod(self.shape)) * 4),
                               (LABELS, self.num_samples * 8)):
                path = self.folder / name
                if not path.exists() or path.stat().st_size != size:
                    with open(path, "wb") as f:
                        f.truncate(size)  # sparse: rows appear as ranks write them
        barrier()
        self._map("r+")
        done = self._done()
        return self.mine()[~done[self.mine()]]

    def _done(self) -> np.ndarray:
        path = self.folder / f"done-r{self.rank}.npy"
        return np.load(path) if path.is_file() else np.zeros(self.num_samples, bool)

    def _map(self, mode: str):
        self._array = np.memmap(self.folder / FEATURES, dtype=np.float32, mode=mode,
                                shape=(self.num_samples, *self.shape))
        self._labels = np.memmap(self.folder / LABELS, dtype=np.int64, mode=mode, shape=(self.num_samples,))

    def write(self, indices: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, flush: bool = False):
        """features [B, outputs, tokens, dim] and labels [B] of the samples `indices` (a replaced sample keeps
        its replacement's label); flags are saved with the rows (flush)."""
        if tuple(features.shape[1:]) != self.shape:
            raise ValueError(f"feature cache {self.folder}: features of shape {tuple(features.shape[1:])}, "
                             f"expected {self.shape}")
        idx = indices.cpu().numpy()
        self._array[idx] = features.detach().float().cpu().numpy()
        self._labels[idx] = labels.cpu().numpy()
        self._pending = np.concatenate([self._pending, idx])
        if flush:
            self.flush()

    def flush(self):
        """Rows to disk, then the flags that say they are there (a crash never flags a row it did not write)."""
        if self._array is None:
            return
        self._array.flush()
        self._labels.flush()
        done = self._done()
        done[self._pending] = True
        tmp = self.folder / f".done-r{self.rank}.tmp.npy"
        np.save(tmp, done)
        tmp.replace(self.folder / f"done-r{self.rank}.npy")
        self._pending = np.zeros(0, np.int64)

    def seal(self, barrier):
        """After every rank wrote its share: the meta file that marks the cache complete (rank 0)."""
        self.flush()
        barrier()
        if self.rank == 0:
            flags = [np.load(p) for p in sorted(self.folder.glob("done-r*.npy"))]
            done = np.logical_or.reduce(flags) if flags else np.zeros(self.num_samples, bool)
            if not done.all():
                raise RuntimeError(f"feature cache {self.folder}: {int((~done).sum())} samples were not computed")
            tmp = self.folder / f".{META}.tmp"
            tmp.write_text(json.dumps({"key": self.key, "num_samples": self.num_samples, "shape": self.shape,
                                       "split": self.split}))
            tmp.replace(self.folder / META)
        barrier()
        self.open()

    def open(self):
        self._map("r")

    def read(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [B, outputs, tokens, dim], labels [B]) of the sample indices (copies: the batch outlives the
        map)."""
        idx = np.asarray(indices.cpu() if torch.is_tensor(indices) else indices)
        return (torch.from_numpy(np.ascontiguousarray(self._array[idx])),
                torch.from_numpy(np.ascontiguousarray(self._labels[idx])))
