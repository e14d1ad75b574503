"""The V-JEPA video/image ViT encoder: tubelet (or 2-D patch) embedding, fixed sin-cos positions (V1) or 3-D RoPE
in every attention (V2), pre-norm blocks."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from jepa_scale.models.attention import attention
from jepa_scale.models.pos_embed import sincos_2d, sincos_3d
from jepa_scale.models.registry import BACKBONES, attention_backend, checkpoint_every
from jepa_scale.models.rope import RoPEAttention, grid_positions
from jepa_scale.models.tokens import gather_tokens


@dataclass(frozen=True)
class Preset:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16


PRESETS = {
    "vit_tiny": Preset(192, 12, 3),
    "vit_small": Preset(384, 12, 6),
    "vit_base": Preset(768, 12, 12),
    "vit_large": Preset(1024, 24, 16),
    "vit_huge": Preset(1280, 32, 16),
    "vit_giant": Preset(1408, 40, 16, 48 / 11),
    "vit_giant_xformers": Preset(1408, 40, 22, 48 / 11),  # V-JEPA 2's ViT-g: 64-wide heads
    # The official preset misspells its MLP-ratio argument, so its 64/13 never applies: trained weights are 4x MLPs.
    "vit_gigantic": Preset(1664, 48, 16, 4.0, patch_size=14),
    "vit_gigantic_xformers": Preset(1664, 48, 26, 4.0),  # V-JEPA 2 only; its ratio is misspelt too
}


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, backend: str = "sdpa"):
        super().__init__()
        self.num_heads, self.backend = num_heads, backend
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B, heads, N, hd]
        x = attention(q, k, v, self.backend)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """V-JEPA 2's `use_silu` MLP: fc3(silu(fc1 x) * fc2 x). fc2 is an input projection here, yet the official
    per-block rescale still divides it by sqrt(2 i) (by name), as `rescale_blocks` does."""

    def __init__(self, dim: int, hidden: int, wide: bool = True):
        super().__init__()
        if wide:  # two thirds of the GELU width, so the three matrices cost what two did; a multiple of 8
            hidden = (int(2 * hidden / 3) + 7) // 8 * 8
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(dim, hidden)
        self.fc3 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc3(F.silu(self.fc1(x)) * self.fc2(x))


class Block(nn.Module):
    # eps: 1e-6 in the official encoder and predictor; the official probes' blocks keep nn.LayerNorm's 1e-5.
    # rope: None (plain attention) or a RoPE variant; then forward takes the tokens' grid positions too.
    # swiglu: None (GELU MLP) or True/False for V2's SwiGLU with or without `wide_silu`.
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, backend: str = "sdpa", eps: float = 1e-6,
                 rope: str | None = None, swiglu: bool | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, backend) if rope is None else RoPEAttention(dim, num_heads, backend, rope)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = MLP(dim, hidden) if swiglu is None else SwiGLU(dim, hidden, wide=swiglu)
        self.checkpoint = False  # recompute this block's activations in backward instead of keeping them

    def _forward(self, x, *pos):
        x = x + self.attn(self.norm1(x), *pos)
        return x + self.mlp(self.norm2(x))

    def forward(self, x, *pos):
        if self.checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, *pos, use_reentrant=False)
        return self._forward(x, *pos)

    def recompute_flops(self, tokens: int, attention: bool = True) -> float:
        """The forward that activation checkpointing runs again: PyTorch's non-reentrant checkpoint stops once the
        tensors backward needs are back, so the MLP's output projection (whose output nothing saves) is not rerun."""
        last = self.mlp.fc3 if isinstance(self.mlp, SwiGLU) else self.mlp.fc2
        return self.flops(tokens, attention) - 2 * tokens * last.in_features * last.out_features

    def flops(self, tokens: int, attention: bool = True) -> float:
        """Forward FLOPs on `tokens` tokens: the four matmuls (2 n in out each) and the two attention products."""
        linears = (self.attn.qkv, self.attn.proj, *(m for m in self.mlp.modules() if isinstance(m, nn.Linear)))
        matmuls = sum(2 * tokens * m.in_features * m.out_features for m in linears)
        return matmuls + (4 * tokens * tokens * self.attn.proj.in_features if attention else 0)

    def saved_bytes_per_token(self, tokens: float = 0, dtype_bytes: int = 2, scan: str | None = None) -> float:
        """The planner's activation model: 34 bytes per channel in bf16 (17 values), the saved tensors of a
        pre-norm transformer block with flash / memory-efficient attention, so no N^2 term (Korthikanti et al.,
        "Reducing activation recomputation", without sequence parallelism). Measured on CPU (float32, SDPA) our
        blocks keep ~5% less: no dropout masks, and the attention output's transposed reshape is a view. The
        length and the scan backend do not change it (the arguments are the Mamba block's)."""
        return 17 * dtype_bytes * self.norm1.normalized_shape[0]

    def input_bytes_per_token(self, dtype_bytes: int = 2) -> float:
        """What activation checkpointing keeps of this block: its input."""
        return dtype_bytes * self.norm1.normalized_shape[0]


class BlockStack:
    """The `Stack` protocol for a model whose units are `Block`s (`_units()` gives them)."""

    def _units(self) -> nn.ModuleList:
        raise NotImplementedError

    def shard_units(self) -> list[nn.Module]:
        return list(self._units())

    def set_activation_checkpointing(self, every: int):
        # non-reentrant checkpointing, so it composes with FSDP and torch.compile
        for i, blk in enumerate(self._units()):
            blk.checkpoint = every > 0 and i % every == 0

    def recompute_fraction(self) -> float:
        units = self._units()
        return sum(b.checkpoint for b in units) / len(units)

    def units_flops(self, tokens: int, attention: bool = True) -> float:
        return sum(b.flops(tokens, attention) for b in self._units())

    def recompute_flops(self, tokens: int, attention: bool = True) -> float:
        return sum(b.recompute_flops(tokens, attention) for b in self._units() if b.checkpoint)

    def attention_backend(self) -> str:
        return self._units()[0].attn.backend

    def set_attention_backend(self, backend: str):
        for blk in self._units():
            blk.attn.backend = backend

    def attention_head_dim(self) -> int:
        attn = self._units()[0].attn
        return attn.proj.in_features // attn.num_heads

    def compile_units(self, backend: str = "inductor"):
        """torch.compile each unit in place (keys and parameters unchanged), so sharding wrappers apply per unit."""
        for blk in self._units():
            blk.compile(backend=backend)


class PatchEmbed(nn.Module):
    """Conv3d tubelets for video ([B, 3, T, H, W]), Conv2d patches for images ([B, 3, H, W]); -> [B, N, D]."""

    def __init__(self, patch_size: int, tubelet_size: int, embed_dim: int, video: bool, in_chans: int = 3):
        super().__init__()
        if video:
            k = (tubelet_size, patch_size, patch_size)
            self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=k)
        else:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.as_gemm = False  # the fast CPU step's form (distributed.cpu_fast_step): same sums, one GEMM

    def forward(self, x):
        if self.as_gemm:
            return self._gemm_forward(x)
        return self.proj(x).flatten(2).transpose(1, 2)  # tokens in (t, h, w) order

    def _gemm_forward(self, x):
        # non-overlapping patches make the convolution a GEMM over unfolded patches; on CPU oneDNN's 3-D
        # convolution and its weight gradient are slower than it (bench/step_time.py --vs-eager)
        w, k = self.proj.weight, self.proj.kernel_size
        grid = [s // kk for s, kk in zip(x.shape[2:], k)]
        x = x[(..., *(slice(0, g * kk) for g, kk in zip(grid, k)))]  # a remainder is dropped, as by the conv
        split = [d for g, kk in zip(grid, k) for d in (g, kk)]
        n = len(k)
        order = [0, *range(2, 2 + 2 * n, 2), 1, *range(3, 3 + 2 * n, 2)]  # (B, grid..., C, kernel...)
        patches = x.reshape(x.size(0), x.size(1), *split).permute(order).reshape(x.size(0), -1, w[0].numel())
        return F.linear(patches, w.reshape(w.size(0), -1), self.proj.bias)


def patch_conv_flops(conv: nn.Module, tokens: int) -> float:
    """Forward FLOPs of a patch-embedding convolution giving `tokens` tokens. From the layer's shape attributes, not
    its weight: ZeRO-3 leaves empty partitions in place of weights."""
    return 2 * tokens * conv.out_channels * conv.in_channels * math.prod(conv.kernel_size)


def init_vit_weights(module: nn.Module, std: float = 0.02, convs: bool = True):
    """Truncated-normal Linear (and Conv) weights, zero biases, LayerNorm (1, 0), as the official `_init_weights`."""
    for m in module.modules():
        if isinstance(m, nn.Linear) or (convs and isinstance(m, (nn.Conv2d, nn.Conv3d))):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_blocks(blocks: nn.ModuleList, start: int = 1):
    """Divide block i's attn.proj and mlp.fc2 weights by sqrt(2 i), i counted from `start`, as the official model
    classes do (the V-JEPA 1 probe counts its self-attention blocks from 2, after its cross-attention block)."""
    with torch.no_grad():
        for i, blk in enumerate(blocks, start=start):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))


class PatchInput:
    """Tubelet (or 2-D patch) tokens with a fixed sin-cos table (or none, under RoPE) and the protocol's forward:
    the input side every video backbone shares. `init_patch_input` sets the attributes it reads."""

    def init_patch_input(self, img_size, patch_size, num_frames, tubelet_size, embed_dim, uniform_power, use_rope):
        self.img_size, self.patch_size = img_size, patch_size
        self.num_frames, self.tubelet_size = num_frames, tubelet_size
        self.is_video = num_frames > 1
        self.embed_dim = self.num_features = self.width = embed_dim
        self.uniform_power, self.use_rope = uniform_power, use_rope
        self.patch_embed = PatchEmbed(patch_size, tubelet_size, embed_dim, self.is_video)
        self.grid_size, self.grid_depth = img_size // patch_size, num_frames // tubelet_size
        self.num_patches = self.grid_size ** 2 * (self.grid_depth if self.is_video else 1)
        # a frozen Parameter, not a buffer, so the state dict matches the official layout; V2 (RoPE) has none
        self.pos_embed = None if use_rope else nn.Parameter(torch.zeros(1, self.num_patches, embed_dim),
                                                            requires_grad=False)

    def set_patch_gemm(self, on: bool):
        """Patch embedding as one GEMM (the fast CPU step) or the convolution (default); same weights."""
        self.patch_embed.as_gemm = on

    def reset_pos_embed(self):
        if self.pos_embed is None:
            return
        d = self.embed_dim
        table = (sincos_3d(d, self.grid_size, self.grid_depth, self.uniform_power) if self.is_video
                 else sincos_2d(d, self.grid_size))
        with torch.no_grad():
            self.pos_embed.copy_(table.unsqueeze(0))

    def embed_flops(self) -> float:
        return patch_conv_flops(self.patch_embed.proj, self.num_patches)

    def interpolate_pos_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """The table for x's size: trilinear (video) or bicubic (image) resize when it differs from training."""
        pos, D = self.pos_embed, self.embed_dim
        if self.is_video:
            _, _, T, H, W = x.shape
            if (T, H, W) == (self.num_frames, self.img_size, self.img_size):
                return pos
            g, gd = self.grid_size, self.grid_depth
            scale = ((T // self.tubelet_size) / gd, (H // self.patch_size) / g, (W // self.patch_size) / g)
            pos = F.interpolate(pos.reshape(1, gd, g, g, D).permute(0, 4, 1, 2, 3), scale_factor=scale, mode="trilinear")
            return pos.permute(0, 2, 3, 4, 1).reshape(1, -1, D)
        _, _, H, W = x.shape
        if (H, W) == (self.img_size, self.img_size):
            return pos
        g = self.grid_size
        scale = math.sqrt((H // self.patch_size) * (W // self.patch_size) / self.num_patches)
        pos = F.interpolate(pos.reshape(1, g, g, D).permute(0, 3, 1, 2), scale_factor=scale, mode="bicubic")
        return pos.permute(0, 2, 3, 1).reshape(1, -1, D)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, N, D] patch tokens with positions; run once per clip, shared by all masks."""
        tokens = self.patch_embed(x)
        return tokens if self.use_rope else tokens + self.interpolate_pos_encoding(x)

    def token_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        """(T', H', W') of the input itself (an image is one frame), so RoPE follows non-default sizes."""
        T = x.shape[2] // self.tubelet_size if x.ndim == 5 else 1
        return T, x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size

    def encode_tokens(self, tokens: torch.Tensor, ids: torch.Tensor | None = None, grid=None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, masks: torch.Tensor | list[torch.Tensor] | None = None):
        """masks None -> [B, N, D]; LongTensor [B, K] -> [B, K, D]; a list of them -> a list, one per mask,
        with the patch embedding computed once."""
        tokens, grid = self.embed(x), self.token_grid(x)
        if masks is None:
            return self.encode_tokens(tokens, None, grid)
        if isinstance(masks, torch.Tensor):
            return self.encode_tokens(gather_tokens(tokens, masks), masks, grid)
        return [self.encode_tokens(gather_tokens(tokens, m), m, grid) for m in masks]


class VisionTransformer(BlockStack, PatchInput, nn.Module):
    def __init__(self, img_size=224, patch_size=16, num_frames=16, tubelet_size=2, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, uniform_power=False, attention="sdpa", init_std=0.02, use_rope=False,
                 rope_variant="official", swiglu: bool | None = None):
        super().__init__()
        self.init_patch_input(img_size, patch_size, num_frames, tubelet_size, embed_dim, uniform_power, use_rope)
        self.num_heads = num_heads
        rope = rope_variant if use_rope else None
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, attention, rope=rope, swiglu=swiglu)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        init_vit_weights(self, init_std)
        rescale_blocks(self.blocks)
        self.reset_pos_embed()

    def _units(self):
        return self.blocks

    def encode_tokens(self, tokens: torch.Tensor, ids: torch.Tensor | None = None, grid=None) -> torch.Tensor:
        """Blocks and norm. With RoPE, `ids` [B, K] are the tokens' flat indices in `grid` (None: all, in order)."""
        pos = ()
        if self.use_rope:
            if ids is None:
                ids = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
            pos = (grid_positions(ids, grid),)
        for blk in self.blocks:
            tokens = blk(tokens, *pos)
        return self.norm(tokens)


def swiglu_option(use_silu: bool, wide_silu: bool) -> bool | None:
    """Block's `swiglu` argument from the V2 keys: None for the GELU MLP."""
    return wide_silu if use_silu else None


def preset_arch(model_name: str, **overrides) -> dict:
    """A preset's architecture by official name, with any of embed_dim, depth, num_heads, mlp_ratio, patch_size
    overridden (None keeps the preset's value)."""
    if model_name not in PRESETS:
        raise ValueError(f"unknown model_name {model_name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[model_name]
    arch = dict(embed_dim=p.embed_dim, depth=p.depth, num_heads=p.num_heads, mlp_ratio=p.mlp_ratio,
                patch_size=p.patch_size)
    arch.update({k: v for k, v in overrides.items() if v is not None})
    return arch


def build_vit(preset: str, cfg) -> VisionTransformer:
    """A preset ViT with the config's overrides (model.embed_dim, depth, num_heads, mlp_ratio; data.patch_size) and
    positions (model.use_rope, rope_variant)."""
    m, d = cfg.model, cfg.data
    arch = preset_arch(preset, embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio,
                       patch_size=d.patch_size)
    enc = VisionTransformer(img_size=d.crop_size, num_frames=d.num_frames, tubelet_size=d.tubelet_size,
                            uniform_power=m.uniform_power, attention=attention_backend(cfg), use_rope=m.use_rope,
                            rope_variant=m.rope_variant, swiglu=swiglu_option(m.use_silu, m.wide_silu), **arch)
    enc.set_activation_checkpointing(checkpoint_every(cfg))
    return enc


for _name in PRESETS:
    BACKBONES.register(_name)(functools.partial(build_vit, _name))
