"""Our chunked CPU selective scan vs the literal `selective_scan_ref` recurrence (tests/reference_selective_scan.py)
on VideoMamba-tiny shapes: batch 1, L = 1568 tokens (8x224x224 at patch 16), E = 384, N = 16, with z, D,
delta_bias and softplus, float32, both scan directions (the backward one on inputs flipped beforehand, as the
mixer does).

Forward+backward (autograd through each) is timed on the forward direction only, one round by default: the
literal loop's backward takes over a minute here (every `deltaA[:, :, i]` slice's backward allocates and zeroes a
gradient of the whole [batch, E, L, N] tensor, 1568 times). --grad-rounds 0 skips it.

Inputs at the init's magnitudes: delta_raw ~ N(0, 1) and delta_bias = 0 (segm_init zeroes dt_proj.bias, so
softplus(delta) ~ 0.7), A = -exp(log(1..N)) (S4D-real), D = 1. Rounds interleave ours and the reference so load
from anything else on the machine hits both alike; the figures are medians. Ends with one JSON line.

    python bench/scan.py [--rounds 7] [--grad-rounds 1]
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference lives in tests/
from jepa_scale.models.selective_scan import chunk_size, selective_scan  # noqa: E402
from tests.reference_selective_scan import selective_scan_ref  # noqa: E402

BATCH, L, E, N = 1, 1568, 384, 16
SEQ = ("u", "delta", "B", "C", "z")  # the [.., L] inputs a backward direction flips


def videomamba_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    A = -torch.exp(torch.log(torch.arange(1, N + 1.0))).expand(E, N).contiguous()
    return dict(u=r(BATCH, E, L), delta=r(BATCH, E, L), A=A, B=r(BATCH, N, L), C=r(BATCH, N, L), D=torch.ones(E),
                z=r(BATCH, E, L), delta_bias=torch.zeros(E))


def directions():
    """(name, inputs) for the forward direction and the backward one (its own parameters' stand-ins, flipped)."""
    back = {k: v.flip(-1).contiguous() if k in SEQ else v for k, v in videomamba_inputs(1).items()}
    return [("forward", videomamba_inputs(0)), ("backward", back)]


def timed(fn):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def forward_ms(fn, t):
    with torch.no_grad():
        return timed(lambda: fn(**t, delta_softplus=True))


def fwd_bwd_ms(fn, t):
    leaves = {k: v.clone().requires_grad_() for k, v in t.items()}
    w = torch.ones(BATCH, E, L)
    return timed(lambda: (fn(**leaves, delta_softplus=True) * w).sum().backward())


def interleaved(measure, dirs, rounds, warm=("scan", "literal")):
    """Median ms per (implementation, direction) over rounds of ours, reference, ours, reference... after a warm-up
    call of those in `warm`."""
    impls = {"scan": lambda **k: selective_scan(**k, backend="torch"), "literal": selective_scan_ref}
    for name in warm:
        measure(impls[name], dirs[0][1])
    times = {(i, d): [] for i in impls for d, _ in dirs}
    for _ in range(rounds):
        for d, t in dirs:
            for i, fn in impls.items():
                times[i, d].append(measure(fn, t))
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--grad-rounds", type=int, default=1)
    args = ap.parse_args()
    dirs = directions()
    with torch.no_grad():
        diffs = [(selective_scan(**t, delta_softplus=True, backend="torch")
                  - selective_scan_ref(**t, delta_softplus=True)).abs().max().item() for _, t in dirs]
        scale = max(selective_scan_ref(**t, delta_softplus=True).abs().max().item() for _, t in dirs)
    fwd = interleaved(forward_ms, dirs, args.rounds)
    both = interleaved(fwd_bwd_ms, dirs[:1], args.grad_rounds, warm=("scan",)) if args.grad_rounds else {}

    threads = torch.get_num_threads()
    print(f"selective scan, batch {BATCH}, L {L}, E {E}, N {N}, fp32; chunk {chunk_size(L)}; torch threads "
          f"{threads} (the default, not set here); load average {os.getloadavg()[0]:.2f}")
    print(f"{'pass':<18}{'direction':<11}{'ours ms':>10}{'literal ms':>12}{'ratio':>8}")
    for label, table in (("forward", fwd), ("forward+backward", both)):
        for d in sorted({d for _, d in table}, key=lambda d: d != "forward"):
            print(f"{label:<18}{d:<11}{table['scan', d]:10.1f}{table['literal', d]:12.1f}"
                  f"{table['literal', d] / table['scan', d]:8.1f}")
    total = lambda table, impl: sum(table[impl, d] for d, _ in dirs)  # noqa: E731 (both directions, one layer)
    figures = {"threads": threads, "chunk": chunk_size(L),
               "scan_ms": round(total(fwd, "scan"), 2), "literal_ms": round(total(fwd, "literal"), 2),
               "scan_vs_literal_time_ratio": round(total(fwd, "literal") / total(fwd, "scan"), 2),
               "max_abs_diff": float(f"{max(diffs):.3g}"), "max_abs_diff_vs_max_output_ratio":
               float(f"{max(diffs) / scale:.3g}")}
    if both:  # one direction
        ours_fb, literal_fb = both["scan", "forward"], both["literal", "forward"]
        figures.update({"scan_fwd_bwd_ms": round(ours_fb, 2), "literal_fwd_bwd_ms": round(literal_fb, 2),
                        "scan_vs_literal_fwd_bwd_time_ratio": round(literal_fb / ours_fb, 2)})
    print(f"both directions: ours {figures['scan_ms']:.1f} ms, literal {figures['literal_ms']:.1f} ms "
          f"(x{figures['scan_vs_literal_time_ratio']:.1f}); max |diff| {figures['max_abs_diff']:.3g} "
          f"(max |out| {scale:.3g})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
