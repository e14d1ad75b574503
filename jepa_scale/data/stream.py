"""The training loop's view of the data: an endless iterator of batches with a resumable position.

Worker processes build whole batches (decode, augment, masks), like the official collator; the main process only
records where the stream is and reports videos that were skipped.
"""
from __future__ import annotations

import collections
import itertools
import logging
from pathlib import Path

import torch

from jepa_scale.data.batch import Batch
from jepa_scale.data.video_batches import VideoBatches

log = logging.getLogger(__name__)


def _one_thread_per_worker(_):
    torch.set_num_threads(1)


class DataStream:
    def __init__(self, batches: VideoBatches, num_workers: int = 0, pin_memory: bool = False,
                 skip_report: str | Path | None = None):
        self.batches, self.num_workers, self.pin_memory = batches, num_workers, pin_memory
        self.next_batch = 0  # the data position: index of the next global batch to train on
        self.skipped = collections.Counter()
        self.empty_batches = 0
        self._report = open(skip_report, "a", buffering=1) if skip_report else None
        self._it = None

    def state_dict(self) -> dict:
        return {"next_batch": self.next_batch, "skipped": dict(self.skipped), "empty_batches": self.empty_batches}

    def load_state_dict(self, state: dict):
        self.next_batch = int(state["next_batch"])
        self.skipped = collections.Counter(state.get("skipped", {}))
        self.empty_batches = int(state.get("empty_batches", 0))
        self._it = None

    def _start(self):
        w = self.num_workers
        loader = torch.utils.data.DataLoader(
            self.batches, batch_size=None, sampler=itertools.count(self.next_batch), num_workers=w,
            pin_memory=self.pin_memory, worker_init_fn=_one_thread_per_worker if w else None,
            prefetch_factor=2 if w else None, persistent_workers=w > 0, multiprocessing_context="fork" if w else None)
        self._it = iter(loader)

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._it is None:
            self._start()
        while True:
            batch = next(self._it)
            self.next_batch = batch.index + 1
            for source, reason in batch.skipped:
                self.skipped[reason.split(" (")[0]] += 1
                log.warning("skipped video %s: %s", source, reason)
                if self._report:
                    self._report.write(f"{batch.index}\t{source}\t{reason}\n")
            if batch.size:
                return batch
            self.empty_batches += 1
            log.warning("batch %d had no usable video; moving to the next batch", batch.index)

    def close(self):
        self._it = None
        if self._report:
            self._report.close()
            self._report = None
