"""The one function that decides how attention is computed.

Backends: `sdpa` (PyTorch picks flash / memory-efficient / cuDNN on GPU, a fused CPU kernel on CPU), `math`
(the textbook formula, as the official code without use_sdpa), `xformers` (GPU only; imported on first use).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "math", "xformers")


def _math_attention(q, k, v):
    # q, k, v: [B, heads, N, hd]
    attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    return attn.softmax(dim=-1) @ v


def _xformers_attention(q, k, v):
    try:
        import xformers.ops as xops
    except ImportError as e:  # pragma: no cover - GPU extra
        raise RuntimeError("model.attention=xformers needs the 'xformers' extra: pip install 'jepa_scale[xformers]'") from e
    # xformers wants [B, N, heads, hd]
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(hd)) v for q, k, v of shape [B, heads, N, hd]; no mask, no dropout."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "math":
        return _math_attention(q, k, v)
    if backend == "xformers":
        return _xformers_attention(q, k, v)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")


_KERNEL_WORDS = ("scaled_dot_product", "flash", "efficient", "cudnn", "bmm", "softmax", "xformers", "fmha")


def attention_kernels(device: torch.device, dtype: torch.dtype = torch.float32, head_dim: int = 64) -> dict:
    """backend -> the operators one small attention call really dispatched on this device (SDPA's choice among
    flash, memory-efficient, cuDNN and math shows as the operator it calls), or why the backend is unavailable.
    Logged at start-up: what `sdpa` picks differs by GPU, dtype and head size."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    q = torch.randn(1, 2, 128, head_dim, device=device, dtype=dtype)
    report = {}
    for backend in BACKENDS:
        try:
            with Recorder() as rec:
                attention(q, q, q, backend)
        except (RuntimeError, ImportError, NotImplementedError) as e:
            report[backend] = f"unavailable ({str(e).splitlines()[0][:120]})"
            continue
        names = sorted(op for op in rec.ops if any(w in op.lower() for w in _KERNEL_WORDS))
        report[backend] = ", ".join(names) or "no attention kernel seen"
    return report
