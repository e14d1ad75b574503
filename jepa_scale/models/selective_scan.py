"""The Mamba-1 selective scan (family.md section 3.3), with the argument semantics of mamba_ssm's
`selective_scan_fn` / `selective_scan_ref`:

    delta = softplus(delta + delta_bias)            (each part optional)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * u_t * B_t,   h_0 = 0, state [batch, E, N]
    y_t   = sum_n C_t[n] * h_t[:, n] + D * u_t
    out   = y * silu(z)                             (if z is given), cast back to u's dtype

u, delta, z: [batch, E, L]; A: [E, N] (real); B, C: [batch, N, L]; D, delta_bias: [E]. Everything is computed in
float32 whatever the input dtype, as the reference and the CUDA kernel do.

Two paths:
- CUDA tensors with a working `mamba_ssm` install: the official fused kernel (`selective_scan_fn`).
- Everything else: `_scan_torch`, a two-level chunked scan in plain torch ops (so autograd gives the backward). The
  literal reference loops over all L tokens with tiny [batch, E, N] ops, so it is bound by Python and dispatch
  overhead; here the loops are over the c positions of a chunk and over the L/c chunks, each step working on all
  chunks at once, which keeps the per-step slices large enough to pay for themselves and small enough to stay in
  cache.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_INSTALL_HINT = ("MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation mamba-ssm (since mamba PR #977 a "
                 "plain `pip install mamba-ssm` no longer builds selective_scan_cuda)")
_LOG2E = 1.0 / math.log(2.0)
_LOG2_TINY = -126.0  # 2**-126, float32's smallest normal: exp2 of less gives denormals, and a slow path
_mamba = None  # (selective_scan_fn or None, why not), filled on first use: importing this module never fails
# a list while monitor.flops.counted_flops runs: each call's (batch, E, N, L, with_z, with_D, differentiated), since
# FlopCounterMode sees only the few matmuls of our PyTorch scan, not its elementwise recurrence
_calls: list | None = None


def _mamba_scan():
    """mamba_ssm's `selective_scan_fn`, or None and the reason. Imported lazily and guarded against any exception:
    without its CUDA extensions mamba_ssm's modules fail at import with ImportError or, in the VideoMamba fork's
    broken except-branches, TypeError; newer releases import but leave `selective_scan_cuda = None`."""
    global _mamba
    if _mamba is None:
        try:
            from mamba_ssm.ops import selective_scan_interface as ssi
        except Exception as e:  # noqa: BLE001 (any failure means "no kernel", and we keep the reason)
            _mamba = (None, f"mamba_ssm is not importable ({type(e).__name__}: {e}); install it with {_INSTALL_HINT}")
        else:
            if getattr(ssi, "selective_scan_cuda", True) is None:
                _mamba = (None, f"mamba_ssm is installed without its selective_scan_cuda extension; reinstall it "
                                f"with {_INSTALL_HINT}")
            else:
                _mamba = (ssi.selective_scan_fn, "")
    return _mamba


def scan_backend(u: torch.Tensor) -> str:
    """Which path backend="auto" takes for a tensor like u: "cuda" (mamba_ssm's kernel) or "torch" (ours)."""
    return "cuda" if u.is_cuda and _mamba_scan()[0] is not None else "torch"


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto"):
    """The selective scan's output [batch, E, L] in u's dtype (no last state). backend: "auto" (the CUDA kernel when
    `scan_backend(u)` says so, else ours), "torch" (always ours) or "cuda" (the kernel, or a clear error)."""
    if backend not in ("auto", "torch", "cuda"):
        raise ValueError(f"unknown selective-scan backend {backend!r}: expected auto, torch or cuda")
    if backend == "cuda":
        fn, why = _mamba_scan()
        problems = [] if u.is_cuda else [f"it needs CUDA tensors, got u on {u.device}"]
        problems += [why] if fn is None else []
        if problems:
            raise RuntimeError("selective_scan(backend='cuda') is unavailable: " + "; ".join(problems))
    if _calls is not None:
        # a scan re-run by activation checkpointing runs inside backward (a graph task is current): its own
        # backward is the original call's, already counted there, so it counts as a forward only
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z)) \
            and torch._C._current_graph_task_id() == -1
        _calls.append((u.shape[0], u.shape[1], A.shape[1], u.shape[2], z is not None, D is not None, grad))
    if backend == "cuda" or (backend == "auto" and scan_backend(u) == "cuda"):
        return _mamba_scan()[0](u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    return _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def chunk_size(L: int) -> int:
    """Positions per chunk. The scan runs ~7 ops per chunk position (two passes) and ~2 per chunk (the carry), so
    sqrt(2L/7) balances their counts; on 2 CPU cores at L = 1568 the time is flat within a few % from 14 to 32."""
    return max(1, round(math.sqrt(2 * L / 7)))


def _scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk: int | None = None):
    """The two-level chunked scan. Split L (padded at the end) into nc chunks of c positions, and lay everything
    out as [c, batch, nc, N, E]:
    1. for each position j of a chunk, all chunks at once: h = exp(delta_j A) h + delta_j u_j B_j from h = 0, giving
       every chunk's end state as if it started from zero;
    2. carry over the chunks: carry_k = exp(A * sum of delta over chunk k-1) carry_{k-1} + end_{k-1};
    3. rerun step 1's recurrence from each chunk's carry-in, now the true state, and read y_j = C_j . h.
    Step 3 repeats the reference's arithmetic (only the carry's decay is one exp of a sum instead of a product of
    exps), and every exponent is delta * A <= 0 for a stable A, so nothing can overflow."""
    dtype_in = u.dtype
    batch, E, L = u.shape
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    c = chunk or chunk_size(L)
    nc = -(-L // c)

    def chunked(x, at):  # [batch, K, L] -> [c, batch, nc, K, 1] (at=-1) or [c, batch, nc, 1, K] (at=-2)
        # contiguous with K innermost: every per-step op broadcasts along it, and a strided innermost operand stops
        # the kernels vectorising (3-4x slower). One copy into the chunked layout, zero padding the last chunk's
        # tail (it cannot affect earlier outputs, and is sliced off): 2-3x faster than pad, then transpose.
        out = x.new_empty(c, x.shape[0], nc, x.shape[1])
        view, full, tail = out.permute(1, 3, 2, 0), L // c, L % c  # view: [batch, K, nc, c]
        view[:, :, :full].copy_(x[..., :full * c].unflatten(-1, (full, c)))
        if tail:
            view[:, :, full, :tail].copy_(x[..., full * c:])
            view[:, :, full, tail:].zero_()
        return out.unsqueeze(at)

    parts = (chunked(delta, -2), chunked(delta * u, -2), chunked(B, -1), chunked(C, -2),  # dt, du [.., 1, E]
             (A.t() * _LOG2E).contiguous())  # A in base 2 as [N, E]: exp2 is ~1.5x faster than exp on CPU
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, delta, A, B, C))
    y = (_scan_graph if grads else _scan_in_place)(*parts, nc)  # [c, batch, nc, E]
    y = y.permute(1, 3, 2, 0).reshape(batch, E, nc * c)[..., :L]
    if D is not None:
        y = torch.addcmul(y, u, D.float()[:, None])
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype_in)


def _scan_graph(dt, du, Bc, Cc, A2, nc):
    """The three steps in out-of-place torch ops, for autograd (every intermediate is saved for the backward).
    Slices come from unbind: one backward node per tensor, where each indexing op's backward would allocate and
    zero a gradient of the whole tensor."""
    c = dt.shape[0]
    dts, dus, Bs, Cs = dt.unbind(0), du.unbind(0), Bc.unbind(0), Cc.unbind(0)
    decay = [torch.exp2(dts[j] * A2) for j in range(c)]  # exp(delta_j A), [batch, nc, N, E]
    if nc > 1:
        h = dus[0] * Bs[0]
        for j in range(1, c):
            h = torch.addcmul(decay[j] * h, dus[j], Bs[j])
        ends = h.unbind(1)
        whole = torch.exp2((dt.sum(0) * A2).clamp(min=_LOG2_TINY)).unbind(1)  # each chunk's total decay
        carry = [torch.zeros_like(ends[0])]
        for k in range(1, nc):
            carry.append(torch.addcmul(ends[k - 1], whole[k - 1], carry[-1]))
        h = torch.stack(carry, 1)
    else:
        h = dt.new_zeros(dt.shape[1], 1, A2.shape[0], A2.shape[1])
    ys = []
    for j in range(c):
        h = torch.addcmul(decay[j] * h, dus[j], Bs[j])
        ys.append((Cs[j] @ h).squeeze(-2))
    return torch.stack(ys)


def _scan_in_place(dt, du, Bc, Cc, A2, nc):
    """The same steps without autograd: the state is updated in place and each position's decay recomputed into
    one reused buffer rather than stored. At these sizes fresh allocations (first-touch page faults) and reading
    stored decays back from memory cost more than the exp: this is ~1.4x faster than storing them."""
    c, batch = dt.shape[:2]
    tmp = dt.new_empty(batch, nc, *A2.shape)

    def step(h, j):  # h_j = exp(delta_j A) h_{j-1} + delta_j u_j B_j
        return h.mul_(torch.mul(dt[j], A2, out=tmp).exp2_()).addcmul_(du[j], Bc[j])

    if nc > 1:
        h = du[0] * Bc[0]
        for j in range(1, c):
            step(h, j)
        whole = (dt.sum(0) * A2).clamp_(min=_LOG2_TINY).exp2_()
        carry = torch.empty_like(h)
        carry[:, 0].zero_()
        for k in range(1, nc):
            torch.addcmul(h[:, k - 1], whole[:, k - 1], carry[:, k - 1], out=carry[:, k])
        h = carry
    else:
        h = tmp.new_zeros(tmp.shape)
    ys = dt.new_empty(c, batch, nc, 1, A2.shape[1])
    for j in range(c):
        torch.matmul(Cc[j], step(h, j), out=ys[j])
    return ys.squeeze(-2)


def selective_scan_flops(batch: int, E: int, N: int, L: int, with_z: bool = True, with_D: bool = True) -> float:
    """FLOPs of one selective scan's forward as the Mamba authors count the scan core (state-spaces/mamba issue
    #110, A. Gu): 9 per (batch, token, channel, state), 9*B*L*E*N, a count that assumes a work-efficient parallel
    scan (2L associative operations per channel and state, not L); plus one per (batch, token, channel) for the D
    skip (+ D*u) and one for the z gate (* silu(z)). Transcendentals (exp, softplus, silu) and casts are not counted.
    This is VMamba's `flops_selective_scan_fn`, built from that issue and used in Mamba-family FLOP tables; it is a
    FLOP count (a multiply-add is 2), like FlopCounterMode's. VMamba's `flops_selective_scan_ref` instead adds up
    numpy einsum_path costs of the reference's einsums halved into MACs, about 3*B*L*E*N: another unit, not used."""
    per_token = 9 * E * N + (E if with_D else 0) + (E if with_z else 0)
    return float(batch * L * per_token)
