"""The official CSV video list: one video a line, `path label`, space-separated, no header.

Paths: an absolute path is kept as it is. A relative path is resolved against the CSV file's folder when the
video exists there, so a list written next to its videos works from any working directory; otherwise against the
working directory (the official loader's behaviour), when it exists there. A relative path found in neither place
is kept as written, and its record fails when tried, with a reason that names both places it was looked for.
Resolving costs one `stat` per relative line (absolute lines cost nothing).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# the counted part of the reason a relative path found nowhere gives (the stream adds a hint for it)
RELATIVE_NOT_FOUND = "missing file with a relative path"


class DataError(ValueError):
    """A data source is unusable as a whole (missing CSV, no usable lines)."""


class NoUsableVideos(DataError):
    """The data stream gave up: no video gave a clip in a long run of tries, or in a whole pass over the list."""


@dataclass(frozen=True)
class VideoRecord:
    path: str  # the video file, or the shard holding it
    label: int
    source: str  # "file.csv:LINE" or "shard.tar:key", for messages about this video
    offset: int = -1  # inside a shard: where the video's bytes start (-1: `path` is the video itself)
    size: int = 0
    num_frames: int = 0  # known from a shard's metadata (0: probe the file)
    fps: float = 0.0
    unusable: str = ""  # known at read time to fail (a relative path found nowhere): the reason, else ""
    audio_offset: int = -1  # inside a shard: where the sample's `wav` member starts (-1: none, or not a shard)
    audio_size: int = 0

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.size)


@dataclass(frozen=True)
class BadLine:
    csv: str
    line: int
    text: str
    reason: str


def resolve_video_path(path: str, csv_folder: Path) -> tuple[str, str]:
    """(path to open, reason it cannot be opened or ""), by the rule in the module docstring."""
    if os.path.isabs(path):
        return path, ""
    beside = csv_folder / path
    if beside.exists():
        return str(beside), ""
    if os.path.exists(path):
        return os.path.abspath(path), ""  # absolute, so nothing later depends on the working directory
    here = Path.cwd() / path
    return path, f"{RELATIVE_NOT_FOUND} (looked for {beside} next to the CSV and {here} in the working directory)"


def read_video_csv(csv_path: str | Path) -> tuple[list[VideoRecord], list[BadLine]]:
    """Parse one CSV. The path is everything before the last whitespace, so paths with spaces survive."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: video list not found")
    folder = csv_path.absolute().parent  # as named: a linked CSV's videos sit beside the link
    records, bad = [], []
    with open(csv_path, encoding="utf-8", errors="replace") as f:
        for n, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)
            if len(parts) != 2:
                bad.append(BadLine(str(csv_path), n, text, "expected 'path label'"))
                continue
            path, label = parts
            try:
                label = int(label)
            except ValueError:
                bad.append(BadLine(str(csv_path), n, text, f"label {label!r} is not an integer"))
                continue
            path, unusable = resolve_video_path(path, folder)
            records.append(VideoRecord(path, label, f"{csv_path}:{n}", unusable=unusable))
    return records, bad


def read_video_lists(csv_paths: list[str]) -> list[VideoRecord]:
    """All records of several CSVs, in order; bad lines are logged with their line numbers and skipped."""
    if not csv_paths:
        raise DataError("data.datasets is empty: give at least one CSV video list")
    records = []
    for p in csv_paths:
        recs, bad = read_video_csv(p)
        for b in bad:
            log.warning("skipping %s:%d (%s): %r", b.csv, b.line, b.reason, b.text)
        records += recs
    if not records:
        raise DataError(f"no usable video lines in {', '.join(csv_paths)}")
    return records
