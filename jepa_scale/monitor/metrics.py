"""Training metrics: buffered per step as device scalars, read back once per log interval, written to a CSV log
(opened once) and tensorboard."""
from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# after the task's own columns (a task defines what one step logs)
RATE_COLUMNS = ("samples_per_s", "tokens_per_s", "tflops_per_s", "mfu", "data_wait_frac", "step_time_s",
                "peak_mem_gib")


class Metrics:
    def __init__(self, folder: str | Path, write_tag: str, columns: tuple[str, ...], rank: int = 0,
                 tensorboard: bool = True,
                 log_freq: int = 10, samples_per_step: int = 1, resume_step: int | None = None,
                 tokens_per_sample: int = 0,
                 device: torch.device | None = None, peak_tflops: float | None = None):
        self.folder = Path(folder)
        self.columns = ("epoch", "itr", *columns, *RATE_COLUMNS)
        self.log_freq, self.samples_per_step = log_freq, samples_per_step
        self.tokens_per_sample, self.peak_tflops = tokens_per_sample, peak_tflops
        self.cuda = device if device is not None and device.type == "cuda" else None
        self.csv_path = self.folder / f"{write_tag}_r{rank}.csv"
        # a resumed run continues its log from the step it resumed at (the rows after its checkpoint, which the
        # interrupted run wrote, are dropped); a fresh run starts a new one
        new = resume_step is None or not self.csv_path.exists()
        if not new:
            _truncate_log(self.csv_path, resume_step)
        self._csv_file = open(self.csv_path, "w" if new else "a", newline="")
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(self.columns)
        self._tb = None
        if tensorboard and rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            # purge_step hides the interrupted run's events from the resumed step on
            self._tb = SummaryWriter(str(self.folder / "tensorboard"), purge_step=resume_step)
        self._rows: list[tuple[int, int, dict, dict]] = []
        self._data_wait = 0.0
        self._t0 = time.perf_counter()
        self.last: dict = {}

    def add_data_wait(self, seconds: float):
        self._data_wait += seconds

    def log(self, step: int, epoch: int, device_scalars: dict, host_scalars: dict) -> bool:
        """device_scalars: 0-d tensors (not read now); host_scalars: Python floats. Flushes every log_freq steps;
        returns whether it did (the caller may then read device state without an extra sync)."""
        self._rows.append((step, epoch, device_scalars, host_scalars))
        if len(self._rows) >= self.log_freq:
            self.flush()
            return True
        return False

    def flush(self):
        if not self._rows:
            return
        keys = list(self._rows[0][2])
        values = torch.stack([torch.stack([r[2][k].float() for k in keys]) for r in self._rows]).tolist()  # one sync
        elapsed = time.perf_counter() - self._t0
        n = len(self._rows)
        samples_per_s = n * self.samples_per_step / elapsed
        # FLOPs per step are host numbers (analytic, from the batch's mask shapes): per device, as MFU wants
        tflops = sum(r[3].pop("flops", 0.0) for r in self._rows) / elapsed / 1e12
        rate = {"samples_per_s": samples_per_s, "tokens_per_s": samples_per_s * self.tokens_per_sample,
                "tflops_per_s": tflops, "data_wait_frac": self._data_wait / elapsed, "step_time_s": elapsed / n}
        if self.peak_tflops:
            rate["mfu"] = tflops / self.peak_tflops
        if self.cuda is not None:
            rate["peak_mem_gib"] = torch.cuda.max_memory_allocated(self.cuda) / 2 ** 30
        for (step, epoch, _, host), vals in zip(self._rows, values):
            row = dict(zip(keys, vals), **host, **rate)
            self._csv.writerow([epoch, step] + [row.get(c, "") for c in self.columns[2:]])
            if self._tb:
                for k, v in row.items():
                    self._tb.add_scalar(f"train/{k}", v, step)
        self._csv_file.flush()
        if self._tb:
            self._tb.flush()
        self.last = dict(row, step=self._rows[-1][0], epoch=self._rows[-1][1])
        mfu = f"  MFU {100 * rate['mfu']:.1f}%" if "mfu" in rate else ""
        task = "  ".join(f"{c} {row[c]:.5g}" for c in self.columns[2:-len(RATE_COLUMNS)] if c in row)
        log.info("step %d  %s  %.1f samples/s  %.3g TFLOP/s%s  data-wait %.0f%%", self.last["step"], task,
                 rate["samples_per_s"], tflops, mfu, 100 * rate["data_wait_frac"])
        self._rows.clear()
        self._data_wait = 0.0
        self._t0 = time.perf_counter()

    def close(self):
        self.flush()
        self._csv_file.close()
        if self._tb:
            self._tb.close()


def _truncate_log(path: Path, step: int):
    """Keep the header and the rows of steps before `step` (atomically rewritten)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if len(r) > 1 and r[1].isdigit() and int(r[1]) < step]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)
