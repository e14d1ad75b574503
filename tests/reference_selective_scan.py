"""A literal, step-by-step transcription of the official Mamba-1 `selective_scan_ref` (state-spaces/mamba and the
VideoMamba fork: mamba_ssm/ops/selective_scan_interface.py; family.md section 3.3), restricted to what VideoMamba
uses: real A [E, N] and input-dependent B, C [batch, N, L] (no groups, no complex A, no cu_seqlens). The Python loop
over L is kept on purpose: it is the yardstick our chunked scan is checked and timed against, not something to use.
"""
import torch
import torch.nn.functional as F


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """u, delta, z: [batch, E, L]; A: [E, N]; B, C: [batch, N, L]; D, delta_bias: [E]. Returns out [batch, E, L]
    in u's dtype (and the last state [batch, E, N] in fp32 if asked)."""
    dtype_in = u.dtype
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B = B.float()
    C = C.float()
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    last_state = None
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        if i == u.shape[2] - 1:
            last_state = x
        ys.append(y)
    y = torch.stack(ys, dim=2)  # (batch dim L)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    out = out.to(dtype=dtype_in)
    return out if not return_last_state else (out, last_state)
