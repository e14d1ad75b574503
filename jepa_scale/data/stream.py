"""The training loop's view of the data: an endless iterator of batches with a resumable position.

Worker processes build whole batches (decode, augment, masks), like the official collator; the main process only
records where the stream is, reports videos that were skipped, and gives up (`NoUsableVideos`) when the list
cannot give clips: after `data.max_consecutive_failures` videos in a row without one, or a whole pass over the list
without one. Both are counted here, from what each batch reports, so they hold for any number of workers.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
from pathlib import Path

import torch

from jepa_scale.data.batch import Batch
from jepa_scale.data.csv_source import RELATIVE_NOT_FOUND, NoUsableVideos
from jepa_scale.data.video_batches import VideoBatches

log = logging.getLogger(__name__)

LOG_LINES_PER_KIND = 20  # then only running counts: a list of broken videos must not fill the disk with logs
REASONS_SHOWN = 4  # in the give-up message; the skip report has them all

# reason -> what to do about it, appended to the give-up message
HINTS = {
    RELATIVE_NOT_FOUND: "Relative paths in a CSV are looked up next to the CSV file, then in the working directory "
                        "({cwd}): put the videos there, fix the paths, or write absolute ones.",
    "missing file": "Check that the videos are reachable from this machine at the paths the CSV gives.",
    "too short": "data.filter_short_videos is true and every video tried is shorter than one clip: set it to false "
                 "(short videos then repeat their last frame) or sample shorter clips (data.num_frames, "
                 "data.sampling_rate, data.clip_duration).",
}


def reason_kind(reason: str) -> str:
    """What is counted: the reason without its particulars ("file too small (0 bytes)" -> "file too small")."""
    return reason.split(" (")[0]


def _power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def _one_thread_per_worker(_):
    torch.set_num_threads(1)


class QuietLog:
    """Warns the first `limit` times for each kind of message, then only at running counts of 100, 1000, ..."""

    def __init__(self, limit: int | None = None):
        self.limit, self.counts = limit or LOG_LINES_PER_KIND, collections.Counter()

    def warn(self, kind: str, msg: str, *args):
        self.counts[kind] += 1
        n = self.counts[kind]
        if n <= self.limit:
            log.warning(msg, *args)
        if n == self.limit:
            log.warning("%s: %d so far; further ones are counted, not logged one by one", kind, n)
        elif n > self.limit and _power_of_ten(n):
            log.warning("%s: %d so far", kind, n)

    def totals(self) -> str:
        """The kinds that went past the limit, with their counts ("" when none did)."""
        return ", ".join(f"{k}: {n}" for k, n in self.counts.most_common() if n > self.limit)


class FailureStreak:
    """Videos tried since the last batch that gave a clip. A batch with any clip ends the streak, whatever the
    order of its failures (a batch does not say), so the stream never gives up early."""

    def __init__(self, limit: int, num_videos: int):
        self.limit, self.num_videos = limit, num_videos
        self.reset()

    def reset(self):
        self.tried, self.videos = 0, set()
        self.reasons, self.examples = collections.Counter(), {}

    def add(self, video: str, reason: str):
        kind = reason_kind(reason)
        self.tried += 1
        self.videos.add(video)
        self.reasons[kind] += 1
        self.examples.setdefault(kind, f"{video}: {reason}")

    @property
    def hopeless(self) -> bool:
        return self.tried >= self.limit or len(self.videos) >= self.num_videos


def _video_lists(batches: VideoBatches) -> list[str]:
    """The files the records came from ("a.csv:12" -> "a.csv"), in first-seen order."""
    return list(dict.fromkeys(r.source.rsplit(":", 1)[0] for r in batches.records))


def give_up_message(streak: FailureStreak, lists: list[str], report: Path | None) -> str:
    """One paragraph: the lists, how many videos were tried, the commonest reasons, and what to do."""
    s = streak
    if s.tried >= s.limit:
        what = (f"the last {s.tried} videos tried in a row ({len(s.videos)} different ones of the {s.num_videos} "
                f"listed) gave no clip (data.max_consecutive_failures={s.limit})")
    else:
        what = f"all {s.num_videos} videos listed were tried ({s.tried} tries) since the last clip and none gave one"
    reasons = "; ".join(f"{kind}: {n} (e.g. {s.examples[kind]})" for kind, n in s.reasons.most_common(REASONS_SHOWN))
    others = sum(s.reasons.values()) - sum(n for _, n in s.reasons.most_common(REASONS_SHOWN))
    if others:
        reasons += f"; other reasons: {others}"
    hints = [HINTS[k].format(cwd=os.getcwd()) for k, _ in s.reasons.most_common() if k in HINTS]
    listed = f" Every skipped video is listed in {report}." if report else ""
    return " ".join([f"no usable videos in {', '.join(lists)}: {what}. Reasons: {reasons}.", *hints]) + listed


class DataStream:
    def __init__(self, batches: VideoBatches, num_workers: int = 0, pin_memory: bool = False,
                 skip_report: str | Path | None = None):
        self.batches, self.num_workers, self.pin_memory = batches, num_workers, pin_memory
        self.next_batch = 0  # the data position: index of the next global batch to train on
        self.skipped = collections.Counter()
        self.empty_batches = 0
        self.skip_report = Path(skip_report) if skip_report else None
        self._report = open(skip_report, "a", buffering=1) if skip_report else None
        self._log = QuietLog()
        self._streak = FailureStreak(batches.max_consecutive_failures, len(batches.records))
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
            self._report_skips(batch)
            if batch.size:
                self._streak.reset()
                return batch
            self.empty_batches += 1
            self._log.warn("batches without a usable video", "batch %d had no usable video; moving to the next batch",
                           batch.index)
            for video, reason in batch.skipped:
                self._streak.add(video, reason)
            if self._streak.hopeless:
                self._it = None  # stops the workers before the error leaves
                raise NoUsableVideos(give_up_message(self._streak, _video_lists(self.batches), self.skip_report))

    def _report_skips(self, batch: Batch):
        """Counted and written to the report one by one; logged one by one only up to a limit per reason."""
        for video, reason in batch.skipped:
            kind = reason_kind(reason)
            self.skipped[kind] += 1
            self._log.warn(f"videos skipped for {kind!r}", "skipped video %s: %s", video, reason)
            if self._report:
                self._report.write(f"{batch.index}\t{video}\t{reason}\n")

    def close(self):
        self._it = None
        if totals := self._log.totals():
            log.warning("skipped in total (beyond the first %d of each logged): %s", self._log.limit, totals)
        if self._report:
            self._report.close()
            self._report = None
