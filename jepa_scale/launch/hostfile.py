"""DeepSpeed hostfiles (`host slots=N`, one line per host; the line order is the rank order) from a node list,
including SLURM's compressed form (`node-[1-4],gpu[01,03]`) expanded here, so no SLURM install is needed."""
from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import product
from pathlib import Path

# one item of a bracket group: `7` or `01-03`; anything else (e.g. a step, `1-9:2`) is refused, not guessed at
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


class HostfileError(ValueError):
    """A node list or hostfile request that cannot give a valid DeepSpeed hostfile; the message says why."""


def expand_nodelist(text: str) -> list[str]:
    """Host names of a SLURM-style node list, in order: `a,b[1-2]` -> a, b1, b2; `x[08-10]` -> x08, x09, x10 (the
    start's zero padding kept); several groups multiply out, the first group outermost, as SLURM does:
    `r[1-2]n[1-2]` -> r1n1, r1n2, r2n1, r2n2. Duplicates are kept (hostfile_text refuses them)."""
    hosts = [host for item in _split_top_level(text) for host in _expand_item(item, text)]
    if not hosts:
        raise HostfileError(f"node list {text!r}: no hosts")
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets (the ones inside separate ranges of one group)."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise HostfileError(f"node list {text!r}: nested '[' at position {i}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HostfileError(f"node list {text!r}: ']' without '[' at position {i}")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise HostfileError(f"node list {text!r}: '[' not closed")
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_item(item: str, text: str) -> list[str]:
    """One host pattern, e.g. `rack[1-2]-gpu[01,03]`: the literal parts and the cartesian product of its groups."""
    parts = re.split(r"\[([^\]]*)\]", item)  # literals at even indices, group contents at odd ones
    literals, groups = parts[0::2], [_expand_group(g, item, text) for g in parts[1::2]]
    if any(re.search(r"\s", lit) for lit in literals):
        raise HostfileError(f"node list {text!r}: host {item!r} contains whitespace")
    hosts = []
    for numbers in product(*groups):
        hosts.append("".join(lit + num for lit, num in zip(literals, numbers)) + literals[-1])
    return hosts


def _expand_group(group: str, item: str, text: str) -> list[str]:
    """`01-03,07` -> 01, 02, 03, 07: each range padded to the width of its start when that starts with 0."""
    numbers = []
    for spec in group.split(","):
        m = _RANGE.fullmatch(spec.strip())
        if not m:
            raise HostfileError(f"node list {text!r}: {item!r}: bad range {spec!r} (expected N or N-M, digits only)")
        lo_text, hi_text = m.group(1), m.group(2) or m.group(1)
        lo, hi = int(lo_text), int(hi_text)
        if hi < lo:
            raise HostfileError(f"node list {text!r}: {item!r}: range {spec!r} runs backwards")
        width = len(lo_text) if lo_text.startswith("0") else 0
        numbers += [str(n).zfill(width) for n in range(lo, hi + 1)]
    return numbers


def hostfile_text(hosts: Iterable[str], slots: int = 8) -> str:
    """DeepSpeed hostfile text: `host slots=N` per host, in the given order (DeepSpeed assigns ranks in that
    order). Refuses what DeepSpeed's parser would refuse or misread: duplicates, names with whitespace or starting
    with '#', slots < 1."""
    hosts = list(hosts)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise HostfileError(f"slots={slots!r}: expected a whole number of processes per host, at least 1")
    if not hosts:
        raise HostfileError("no hosts: DeepSpeed refuses an empty hostfile")
    seen = set()
    for host in hosts:
        if not host or re.search(r"\s", host) or host.startswith("#"):
            raise HostfileError(f"host {host!r}: not a host name DeepSpeed's hostfile can hold")
        if host in seen:
            raise HostfileError(f"host {host!r} is listed twice: DeepSpeed refuses duplicate hostfile entries")
        seen.add(host)
    return "".join(f"{host} slots={slots}\n" for host in hosts)


def write_hostfile(path: str | Path, hosts: Iterable[str], slots: int = 8) -> Path:
    """Write hostfile_text(hosts, slots) to `path` (checked first: nothing is written for a bad request)."""
    text = hostfile_text(hosts, slots)
    path = Path(path)
    path.write_text(text)
    return path
