"""VideoMamba as a V-JEPA encoder: bidirectional Mamba blocks ("bimamba v2") over tubelet tokens with a fixed 3-D
sin-cos table, as the Video-Mamba-JEPA design has it (tubelet 2, no cls token, no learned tables, no head). The
context encoder scans only the kept tokens, in their original (t, h, w) order."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from jepa_scale.models.registry import BACKBONES, checkpoint_every
from jepa_scale.models.selective_scan import chunk_size, selective_scan, selective_scan_flops
from jepa_scale.models.vit import BlockStack, PatchInput


@dataclass(frozen=True)
class MambaPreset:
    embed_dim: int
    depth: int
    head_dim: int = 64  # only for what asks for heads: a V1 predictor's or a probe's default head count


MAMBA_DT_INITS = ("videomamba", "mamba")  # model.mamba_dt_init: upstream's dt bias 0, or Mamba's init
MAMBA_PRESETS = {
    "videomamba_tiny": MambaPreset(192, 24, head_dim=96),  # the JEPA fork passes head_dim=96 for tiny
    "videomamba_small": MambaPreset(384, 24),
    "videomamba_middle": MambaPreset(576, 32),
    "videomamba_large": MambaPreset(768, 32),  # the JEPA fork's addition
}


class DtProj(nn.Linear):
    """dt_proj: its weight product without the bias, and the bias in float32 for the scan to add inside its
    softplus, as the official inner function does. Both come out of this module's own forward so that ZeRO-3,
    which gathers a module's parameters around its forward, has them gathered."""

    def forward(self, x):
        return F.linear(x, self.weight), self.bias.float().clone()


class BiMambaMixer(nn.Module):
    """Mamba's mixer scanning both ways: shared in/out projections, and per direction its own causal depthwise conv,
    x_proj, dt_proj, A_log and D (the `_b` parameters scan the reversed sequence). The two directions are summed;
    `divide_out` halves the sum (an option upstream added later against NaNs; off in the released models)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, divide_out: bool = False,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_floor: float = 1e-4):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner, self.dt_rank = expand * d_model, math.ceil(d_model / 16)
        self.divide_out = divide_out
        self.dt_range = (dt_min, dt_max, dt_floor)
        E, R, N = self.d_inner, self.dt_rank, d_state
        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        for sfx in ("", "_b"):
            setattr(self, "conv1d" + sfx, nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1, bias=True))
            setattr(self, "x_proj" + sfx, nn.Linear(E, R + 2 * N, bias=False))
            setattr(self, "dt_proj" + sfx, DtProj(R, E, bias=True))
        self.A_log = nn.Parameter(torch.empty(E, N))
        self.A_b_log = nn.Parameter(torch.empty(E, N))
        self.D = nn.Parameter(torch.empty(E))
        self.D_b = nn.Parameter(torch.empty(E))
        self.out_proj = nn.Linear(E, d_model, bias=False)
        self.reset_ssm_parameters()

    def reset_ssm_parameters(self):
        """Mamba's own init: the dt projections (`reset_dt`), A_log = log(1..N) per channel (S4D-real), D = 1."""
        self.reset_dt()
        with torch.no_grad():
            a = torch.arange(1, self.d_state + 1, dtype=torch.float32).log().expand(self.d_inner, -1)
            self.A_log.copy_(a)
            self.A_b_log.copy_(a)
            self.D.fill_(1.0)
            self.D_b.fill_(1.0)

    def reset_dt(self):
        """Mamba's dt init: dt_proj weight U(+-R^-1/2), its bias the inverse softplus of a log-uniform dt in
        [dt_min, dt_max] (floored at dt_floor)."""
        dt_min, dt_max, dt_floor = self.dt_range
        with torch.no_grad():
            for dt_proj in (self.dt_proj, self.dt_proj_b):
                nn.init.uniform_(dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
                dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
                dt = dt.clamp(min=dt_floor)
                dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _direction(self, x, z, sfx: str):
        """One direction's conv, projections and scan on x, z [B, E, L] (already reversed for the backward one)."""
        conv, x_proj, dt_proj = (getattr(self, n + sfx) for n in ("conv1d", "x_proj", "dt_proj"))
        A_log, D = (self.A_b_log, self.D_b) if sfx else (self.A_log, self.D)
        L = x.size(-1)
        x = F.silu(conv(x)[..., :L])  # causal: left padding d_conv - 1, the first L outputs
        dt, B, C = x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta, delta_bias = dt_proj(dt)  # the bias goes in the scan, inside the softplus
        return selective_scan(x, delta.transpose(1, 2), -torch.exp(A_log.float()), B.transpose(1, 2),
                              C.transpose(1, 2), D.float(), z, delta_bias=delta_bias, delta_softplus=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, L, D] -> [B, L, D]. Both x and z are reversed for the backward scan, so each token is gated by its
        own z in both directions."""
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)
        y = self._direction(x, z, "") + self._direction(x.flip(-1), z.flip(-1), "_b").flip(-1)
        if self.divide_out:
            y = y / 2
        return self.out_proj(y.transpose(1, 2))

    def flops(self, tokens: int) -> float:
        """Forward FLOPs on `tokens` tokens: the projections and, per direction, the padded conv (it computes
        L + d_conv - 1 outputs), x_proj, dt_proj and the selective scan (with z and D)."""
        E, R, N, L = self.d_inner, self.dt_rank, self.d_state, tokens
        shared = 2 * L * self.d_model * 2 * E + 2 * L * E * self.d_model
        per_dir = (2 * E * self.d_conv * (L + self.d_conv - 1) + 2 * L * E * (R + 2 * N) + 2 * L * R * E
                   + selective_scan_flops(1, E, N, L, with_z=True, with_D=True))
        return shared + 2 * per_dir

    def saved_bytes_per_token(self, tokens: float, dtype_bytes: int = 2, scan: str = "cuda") -> float:
        """Bytes this mixer's forward keeps for backward per token of a `tokens`-long sequence, activations in
        `dtype_bytes` (2: bf16 autocast, 4: float32 training), the scan's float32 work in 4. From the shapes of
        what autograd keeps (measured against saved_tensors_hooks on CPU, tests/test_plan.py):
        - shared: in_proj's output [x | z] (the forward direction's conv and gate keep views of it) and out_proj's
          input (a copy: the sum of both directions, transposed);
        - per direction: the padded conv output (SiLU's input), x_proj's input (a transposed copy) and its output
          [dt | B | C] (dt_proj keeps a view of it); the backward direction's conv keeps its reversed x (a copy);
        - the scan (`_scan_saved_bytes`): `scan="cuda"` (mamba_ssm's kernel, what a GPU run with mamba_ssm uses)
          or `scan="torch"` (our chunked scan: the CPU, and GPUs without mamba_ssm). With the norm (MambaBlock):
          ~71 and ~1000 bytes per channel in bf16 (D 192 to 768, 600 to 6000 tokens).
        Per-unit constants (A = -exp(A_log) [E, N], a few KiB) are left out."""
        E, R, N, p, L = self.d_inner, self.dt_rank, self.d_state, dtype_bytes, tokens
        shared = p * 3 * E
        per_dir = p * (E * (L + self.d_conv - 1) / L + E + R + 2 * N)
        scans = sum(self._scan_saved_bytes(L, p, scan, reverse) for reverse in (False, True))
        return shared + 2 * per_dir + p * E + scans

    def _scan_saved_bytes(self, L: float, p: int, scan: str, reverse: bool) -> float:
        """Per token, what one direction's selective scan keeps. mamba_ssm's SelectiveScanFn keeps u, delta, B, C,
        z (contiguous copies of our strided views; the backward direction's z is already a reversed copy), its
        pre-gate output, and the float32 states only at its 2048-token chunk edges: its backward recomputes the
        rest. Our chunked scan (selective_scan._scan_graph) keeps, in float32: delta + bias and its softplus, u,
        the D-skip output and silu(z), z itself (unless it is a float32 view of in_proj's output: the forward
        direction in float32 training), the chunked delta, delta * u, B, C and per-chunk delta sums, and the
        states [E, N]: exp(delta A) and h at every position of both passes, and per chunk its decay (and the
        clamp's input), its carry and the second pass's start: (3 + 3 / c) per token, c = chunk_size(L)."""
        E, N, f = self.d_inner, self.d_state, 4
        if scan == "cuda":
            return p * (4 * E + 2 * N) + f * 2 * N * E * math.ceil(L / 2048) / L
        if scan != "torch":
            raise ValueError(f"unknown selective-scan backend {scan!r}: expected cuda or torch")
        c = chunk_size(max(1, round(L)))
        pad = c * math.ceil(L / c) / L  # the last chunk is padded to c positions
        z = 0 if (p == f and not reverse) else f * E
        chunked = 2 * E + 2 * N + E / c
        return f * (5 * E + pad * (chunked + N * E * (3 + 3 / c))) + z


class DropPath(nn.Module):
    """Drops a sample's whole residual branch with probability p (scaled by 1/(1-p)) in training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class MambaBlock(nn.Module):
    """VideoMamba's "add -> norm -> mixer" block: takes and returns (hidden, residual); the residual stream stays
    float32 (`residual_in_fp32`). `drop_path` drops the previous block's output as it joins the residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, divide_out: bool = False):
        super().__init__()
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.mixer = BiMambaMixer(dim, divide_out=divide_out)
        self.drop_path = DropPath(drop_path)
        self.checkpoint = False

    def _forward(self, hidden, residual):
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        residual = residual.float()
        return self.mixer(self.norm(residual.to(self.norm.weight.dtype))), residual

    def forward(self, hidden, residual=None):
        if self.checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, hidden, residual, use_reentrant=False)
        return self._forward(hidden, residual)

    def flops(self, tokens: int, attention: bool = True) -> float:
        return self.mixer.flops(tokens)

    def recompute_flops(self, tokens: int, attention: bool = True) -> float:
        # the non-reentrant checkpoint stops once backward's tensors are back: out_proj's output is saved by nobody
        out = self.mixer.out_proj
        return self.flops(tokens) - 2 * tokens * out.in_features * out.out_features

    def saved_bytes_per_token(self, tokens: float, dtype_bytes: int = 2, scan: str = "cuda") -> float:
        """The planner's activation model (see BiMambaMixer.saved_bytes_per_token): the mixer's, plus the RMSNorm
        over the float32 residual and in_proj's input (the norm's output, in the activation dtype). Our scan
        (`torch`) goes with the CPU's composite RMSNorm, which keeps its input, 1/rms and the normalised input
        (for the weight's gradient); the CUDA kernel with CUDA's fused RMSNorm, which keeps the input and 1/rms
        (assumed from torch's dispatch; not measured here)."""
        D, f = self.mixer.d_model, 4
        norm = f * ((2 if scan == "torch" else 1) * D + 1)
        return norm + dtype_bytes * D + self.mixer.saved_bytes_per_token(tokens, dtype_bytes, scan)

    def input_bytes_per_token(self, dtype_bytes: int = 2) -> float:
        """What activation checkpointing keeps of this block: its inputs, the hidden state in the activation dtype
        and the float32 residual."""
        return (dtype_bytes + 4) * self.mixer.d_model


def mamba_blocks(dim: int, depth: int, drop_path_rate: float = 0.0, divide_out: bool = False) -> nn.ModuleList:
    """`depth` MambaBlocks with VideoMamba's stochastic-depth rule: dpr = linspace(0, rate, depth) and block i
    drops block i-1's output with [0] + dpr (the final add -> norm drops the last one's with the full rate)."""
    # in Python, not torch.linspace, so that meta-device builds work
    dpr = [0.0] + [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
    return nn.ModuleList([MambaBlock(dim, dpr[i], divide_out) for i in range(depth)])


class MambaStack(BlockStack):
    """The `Stack` protocol for a model of MambaBlocks (`_units()`), which also has a `drop_path` for the final
    add -> norm: no attention, so the trainer's kernel report skips it."""

    def attention_backend(self) -> None:
        return None

    def set_attention_backend(self, backend: str):
        pass

    def scan_blocks(self, tokens: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """The blocks over tokens [B, L, D] in sequence order, then `norm` of the last residual add."""
        hidden, residual = tokens, None
        for blk in self._units():
            hidden, residual = blk(hidden, residual)
        return norm((residual + self.drop_path(hidden)).to(norm.weight.dtype))


def init_videomamba_weights(model: nn.Module, depth: int, dt_init: str = "videomamba"):
    """VideoMamba's init, in its order: Mamba's own (in the mixer's constructor), then every Linear trunc-normal
    0.02 with zero bias, which overwrites dt_proj too, so upstream's dt bias is 0 and delta starts at
    softplus(0) = 0.69 (`dt_init: mamba` restores Mamba's dt init afterwards), then every out_proj kaiming-uniform
    divided by sqrt(depth). Convolutions keep PyTorch's default init."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, BiMambaMixer):
            nn.init.kaiming_uniform_(m.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                m.out_proj.weight.div_(math.sqrt(depth))
            if dt_init == "mamba":
                m.reset_dt()  # A and D were never touched by the Linear init


class VideoMamba(MambaStack, PatchInput, nn.Module):
    """Encoder over [B, 3, T, H, W] clips; the Backbone protocol of models/protocols.py."""

    def __init__(self, img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=192, depth=24,
                 head_dim=64, num_heads=None, uniform_power=False, drop_path_rate=0.0, divide_out=False,
                 dt_init="videomamba"):
        super().__init__()
        self.init_patch_input(img_size, patch_size, num_frames, tubelet_size, embed_dim, uniform_power, False)
        self.num_heads = num_heads or max(1, embed_dim // head_dim)
        self.blocks = mamba_blocks(embed_dim, depth, drop_path_rate, divide_out)
        self.drop_path = DropPath(drop_path_rate)
        self.norm_f = nn.RMSNorm(embed_dim, eps=1e-5)
        init_videomamba_weights(self, depth, dt_init)
        self.reset_pos_embed()

    def _units(self):
        return self.blocks

    def encode_tokens(self, tokens: torch.Tensor, ids: torch.Tensor | None = None, grid=None) -> torch.Tensor:
        """Blocks and final norm over the tokens in ascending position (a scan's order matters), returned in the
        order of `ids` (None: all tokens, already in order)."""
        order = None
        if ids is not None:
            order = ids.argsort(dim=1)
            tokens = torch.gather(tokens, 1, order.unsqueeze(-1).expand_as(tokens))
        out = self.scan_blocks(tokens, self.norm_f)
        if order is not None:
            out = torch.empty_like(out).scatter_(1, order.unsqueeze(-1).expand_as(out), out)
        return out


def build_videomamba(preset: str, cfg) -> VideoMamba:
    """A preset VideoMamba with the config's overrides (model.embed_dim, depth, num_heads; data.patch_size,
    tubelet_size) and
    options (model.mamba_dt_init, mamba_divide_out, drop_path)."""
    m, d, p = cfg.model, cfg.data, MAMBA_PRESETS[preset]
    enc = VideoMamba(img_size=d.crop_size, patch_size=d.patch_size, num_frames=d.num_frames,
                     tubelet_size=d.tubelet_size, embed_dim=m.embed_dim or p.embed_dim, depth=m.depth or p.depth,
                     head_dim=p.head_dim, num_heads=m.num_heads, uniform_power=m.uniform_power, drop_path_rate=m.drop_path,
                     divide_out=m.mamba_divide_out, dt_init=m.mamba_dt_init)
    enc.set_activation_checkpointing(checkpoint_every(cfg))
    return enc


for _name in MAMBA_PRESETS:
    BACKBONES.register(_name)(functools.partial(build_videomamba, _name))
