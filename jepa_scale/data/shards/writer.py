"""Webdataset tar shards written atomically, each with a DALI index and a sidecar listing its samples."""
from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import webdataset as wds

DALI_INDEX_VERSION = "v1.2"


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def temp_name(final_name: str) -> str:
    """Where a file is written before it appears as `final_name`: hidden and `.tmp`, so readers never see it."""
    return f".{final_name}.tmp"


def _shard_re(prefix: str, temp: bool) -> re.Pattern:
    name = rf"{re.escape(prefix)}-\d{{6,}}\.tar"
    return re.compile(rf"\.{name}\.tmp" if temp else name)


def shard_files(out_dir: str | Path, prefix: str) -> list[Path]:
    """The finished shards of `prefix`, by index (past 999999 names no longer sort as numbers). Exact names, not
    a glob: `a-*.tar` would also match the shards of a dataset named `a-b`."""
    pattern = _shard_re(prefix, temp=False)
    return sorted((p for p in Path(out_dir).iterdir() if pattern.fullmatch(p.name)), key=shard_index)


def shard_index(path: str | Path) -> int:
    return int(Path(path).stem.rsplit("-", 1)[1])


def is_shard_temp(filename: str, prefixes: list[str]) -> bool:
    """Is `filename` a shard that a ShardWriter of one of `prefixes` started and did not finish?"""
    return any(_shard_re(p, temp=True).fullmatch(filename) for p in prefixes)


def member_table(tar_path: str | Path) -> list[tuple[str, str, int, int]]:
    """(basename, ext, data offset, size) of every regular member, in archive order."""
    rows = []
    with tarfile.open(tar_path) as tar:
        for m in tar:
            if m.isreg():
                base = os.path.basename(m.name)
                dot = base.find(".")
                rows.append((m.name[: len(m.name) - len(base) + dot], base[dot + 1:], m.offset_data, m.size))
    return rows


def write_dali_index(tar_path: str | Path, index_path: str | Path):
    """The index `fn.readers.webdataset(index_paths=...)` reads (the format of DALI's wds2idx), so DALI starts
    without scanning the tar."""
    samples: list[list[tuple]] = []
    last = None
    for key, ext, offset, size in member_table(tar_path):
        if key != last:
            samples.append([])
            last = key
        samples[-1].append((ext, offset, size, f"{key}.{ext}"))
    lines = [" ".join(f"{e} {o} {s} {n}" for e, o, s, n in sample) for sample in samples]
    Path(index_path).write_text(f"{DALI_INDEX_VERSION} {len(samples)}\n" + "\n".join(lines) + "\n")


class ShardWriter:
    """Adds samples to `{prefix}-{index:06d}.tar`, starting a new shard past `max_bytes`. A shard appears under
    its final name only when complete (with its `.idx` and `.json` sidecar), so an interrupted run leaves only
    whole shards behind."""

    def __init__(self, out_dir: str | Path, prefix: str, max_bytes: int, start_index: int = 0):
        self.out_dir, self.prefix, self.max_bytes = Path(out_dir), prefix, max_bytes
        self.index = start_index
        self.finished: list[dict] = []
        self._tar = None

    def _open(self):
        self._name = shard_name(self.prefix, self.index)
        self._tmp = self.out_dir / temp_name(self._name)
        self._file = open(self._tmp, "wb")
        self._tar = wds.TarWriter(self._file)
        self._samples, self._bytes = [], 0

    def add(self, key: str, components: dict[str, bytes], record: dict):
        """components: extension -> bytes; record: what the sidecar says of this sample (label, source, meta)."""
        assert "/" not in key and "." not in key, key
        if self._tar is None:
            self._open()
        self._tar.write({"__key__": key, **components})
        self._samples.append({"key": key, **record})
        self._bytes += sum(len(v) for v in components.values())
        if self._bytes >= self.max_bytes:
            self.close_shard()

    def close_shard(self):
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        final = self.out_dir / self._name
        offsets = {(k, e): (o, s) for k, e, o, s in member_table(self._tmp)}
        for sample in self._samples:
            sample["members"] = {e: list(os_) for (k, e), os_ in offsets.items() if k == sample["key"]}
        write_dali_index(self._tmp, final.with_suffix(".idx"))
        sidecar = {"shard": self._name, "num_samples": len(self._samples), "samples": self._samples}
        final.with_suffix(".json").write_text(json.dumps(sidecar))
        os.replace(self._tmp, final)  # last: the tar's presence means the shard and its sidecars are complete
        self.finished.append(sidecar)
        self.index += 1
        self._tar = None

    def close(self):
        self.close_shard()
