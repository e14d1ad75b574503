"""Which samples make global batch j: one or several datasets, mixed by weight, in epochs or resampled.

Pure functions of (seed, j): the same on every rank and worker and after a resume, so micro-batch r of batch j
is always the same samples and an epoch covers each sample of a single dataset exactly once.
"""
from __future__ import annotations

import functools

import numpy as np

from jepa_scale.data.csv_source import DataError

# generator namespaces, so that no two kinds of draw share a seed
_PER_DATASET, _EPOCH_MIX, _RESAMPLED = 0, 1, 2


class SampleOrder:
    def __init__(self, sizes: list[int], global_batch: int, seed: int, weights: list[float] | None = None,
                 mode: str = "epoch"):
        if mode not in ("epoch", "resampled"):
            raise ValueError(f"sampling mode must be epoch or resampled, got {mode!r}")
        if weights is not None and len(weights) != len(sizes):
            raise ValueError(f"{len(weights)} weights for {len(sizes)} datasets")
        self.sizes, self.global_batch, self.seed, self.mode = list(sizes), global_batch, seed, mode
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])[:-1]
        w = np.asarray(weights if weights is not None else sizes, dtype=float)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"dataset weights must be >= 0 and not all 0, got {list(w)}")
        self.weights = w / w.sum()
        total = int(sum(sizes))
        # an epoch draws round(w_i * total) samples from dataset i: the whole set when weights follow the sizes
        self.per_epoch = [int(round(p * total)) for p in self.weights]
        self.batches_per_epoch = sum(self.per_epoch) // global_batch

    def _rng(self, *key) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    @functools.lru_cache(maxsize=2)
    def _epoch(self, epoch: int) -> np.ndarray:
        parts = []
        for i, (n, k) in enumerate(zip(self.sizes, self.per_epoch)):
            reps = -(-k // n) if n else 0  # whole passes over dataset i (more than one when up-weighted)
            ids = np.concatenate([self._rng(_PER_DATASET, epoch, i, r).permutation(n) for r in range(reps)] or [np.zeros(0, int)])
            parts.append(self.offsets[i] + ids[:k])
        return self._rng(_EPOCH_MIX, epoch).permutation(np.concatenate(parts))

    def batch(self, j: int) -> np.ndarray:
        """Global sample ids of global batch j (length global_batch)."""
        if self.mode == "resampled":
            rng = self._rng(_RESAMPLED, j)
            which = rng.choice(len(self.sizes), size=self.global_batch, p=self.weights)
            return np.array([self.offsets[d] + rng.integers(self.sizes[d]) for d in which])
        epoch, k = divmod(j, self.batches_per_epoch)
        return self._epoch(epoch)[k * self.global_batch:(k + 1) * self.global_batch]


class MicroBatchSlices:
    """Map-style datasets whose item j is micro-batch `micro_index` of global batch j of a SampleOrder (use with
    `batch_size=None`): the slicing every pretraining stream shares."""

    def _slice(self, sizes: list[int], batch_size: int, micro_index: int, num_micro: int, seed: int,
               weights=None, mode: str = "epoch", what: str = "samples"):
        self.batch_size, self.micro_index, self.num_micro = batch_size, micro_index, num_micro
        self.global_batch = batch_size * num_micro
        self.order = SampleOrder(sizes, self.global_batch, seed, weights, mode)
        self.batches_per_epoch = self.order.batches_per_epoch
        if self.batches_per_epoch == 0:
            raise DataError(f"{sum(sizes)} {what} cannot fill one global batch of {self.global_batch} "
                            f"(data.batch_size={batch_size} x {num_micro} micro-batches)")

    def __len__(self):  # nominal; the stream is indexed by an unbounded batch counter
        return self.batches_per_epoch

    def sample_ids(self, j: int) -> list[int]:
        start = self.micro_index * self.batch_size
        return self.order.batch(j)[start:start + self.batch_size].tolist()
