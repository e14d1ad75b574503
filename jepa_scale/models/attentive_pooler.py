"""The frozen-eval attentive probe: learned queries cross-attend to encoder tokens, then a linear head.

Two layouts, each loading the released probe files of its generation with strict key matching:

- `v1` (V-JEPA): cross-attention block first, then depth-1 self-attention blocks on the pooled query. The
  cross-attention holds a `proj` Linear that is never applied: the released probes were trained that way, so its
  weights are in their state dicts but must not touch the output.
- `v2` (V-JEPA 2): depth-1 self-attention blocks on the encoder tokens first (the expensive part; activation
  checkpointing optional), then the cross-attention block; no `proj` at all.

Every LayerNorm here keeps nn.LayerNorm's default eps 1e-5, as the official probes do (the encoder uses 1e-6).
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn

from jepa_scale.models.attention import attention
from jepa_scale.models.vit import MLP, Block, init_vit_weights, rescale_blocks

LAYOUTS = ("v1", "v2")
PROBE_LN_EPS = 1e-5


class CrossAttention(nn.Module):
    """Queries [B, n, D] attend to tokens [B, N, D] -> [B, n, D]; head_dim^-0.5 scale, no output projection.

    has_proj: hold an (unused) `proj` Linear so V-JEPA 1 probe files load strictly."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, has_proj: bool = False,
                 backend: str = "sdpa"):
        super().__init__()
        self.num_heads, self.backend = num_heads, backend
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        if has_proj:
            self.proj = nn.Linear(dim, dim)  # never applied: the released V-JEPA 1 probes were trained without it

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, n, C = q.shape
        N, h = x.shape[1], self.num_heads
        q = self.q(q).reshape(B, n, h, C // h).transpose(1, 2)  # [B, heads, n, hd]
        kv = self.kv(x).reshape(B, N, 2, h, C // h).permute(2, 0, 3, 1, 4)
        out = attention(q, kv[0], kv[1], self.backend)
        return out.transpose(1, 2).reshape(B, n, C)


class CrossAttentionBlock(nn.Module):
    """q + xattn(q, norm1(x)), then + mlp(norm2(q)): the tokens are normalised, the query never is."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 has_proj: bool = False, backend: str = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=PROBE_LN_EPS)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias, has_proj, backend)
        self.norm2 = nn.LayerNorm(dim, eps=PROBE_LN_EPS)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


def _check_layout(layout: str):
    if layout not in LAYOUTS:
        raise ValueError(f"unknown probe layout {layout!r}; choose one of {LAYOUTS}")


class AttentivePooler(nn.Module):
    """Tokens [B, N, D] -> pooled queries [B, num_queries, D]; `depth` counts the cross-attention block."""

    def __init__(self, num_queries: int = 1, embed_dim: int = 768, num_heads: int = 12, mlp_ratio: float = 4.0,
                 depth: int = 1, layout: str = "v1", init_std: float = 0.02, backend: str = "sdpa",
                 activation_checkpointing: bool = False):
        super().__init__()
        _check_layout(layout)
        if depth < 1:
            raise ValueError(f"probe depth must be >= 1 (the cross-attention block), got {depth}")
        self.layout = layout
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.cross_attention_block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, True, layout == "v1",
                                                         backend)
        # an empty list for depth 1 has no state-dict keys, like the official `blocks = None`
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, backend, eps=PROBE_LN_EPS)
                                     for _ in range(depth - 1)])
        for blk in self.blocks:
            blk.checkpoint = activation_checkpointing
        self._init_weights(init_std)

    def _init_weights(self, std: float):
        # same draw order as the official (query, then every Linear in module order), so one seed gives one init
        nn.init.trunc_normal_(self.query_tokens, std=std)
        init_vit_weights(self, std, convs=False)
        cross = self.cross_attention_block
        with torch.no_grad():
            if self.layout == "v1":
                cross.xattn.proj.weight.div_(math.sqrt(2.0))
                cross.mlp.fc2.weight.div_(math.sqrt(2.0))
                rescale_blocks(self.blocks, start=2)
            else:
                rescale_blocks(self.blocks, start=1)
                # the official reuses its loop index: the cross block counts as the last self-attention block
                cross.mlp.fc2.weight.div_(math.sqrt(2.0 * max(1, len(self.blocks))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "v2":
            for blk in self.blocks:
                x = blk(x)
        q = self.cross_attention_block(self.query_tokens.repeat(len(x), 1, 1), x)
        if self.layout == "v1":
            for blk in self.blocks:
                q = blk(q)
        return q


class AttentiveClassifier(nn.Module):
    """Tokens [B, N, D] -> logits [B, num_classes]: pooler (one query) -> squeeze -> Linear, no norm between.

    The head keeps nn.Linear's default init, as the official (only the pooler is re-initialised)."""

    def __init__(self, embed_dim: int = 768, num_heads: int = 12, depth: int = 1, num_classes: int = 1000,
                 layout: str = "v1", mlp_ratio: float = 4.0, init_std: float = 0.02, backend: str = "sdpa",
                 activation_checkpointing: bool = False):
        super().__init__()
        self.pooler = AttentivePooler(1, embed_dim, num_heads, mlp_ratio, depth, layout, init_std, backend,
                                      activation_checkpointing)
        self.linear = nn.Linear(embed_dim, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pooler(x).squeeze(1))


def build_probe(layout: str, embed_dim: int, num_heads: int, depth: int, num_classes: int,
                **kwargs) -> AttentiveClassifier:
    """The official probe of `layout`: V-JEPA 1 evals use depth 1 with the encoder's num_heads; V-JEPA 2 evals
    depth 4 (`num_probe_blocks`) with num_heads from the eval config (16). kwargs: mlp_ratio, init_std, backend,
    activation_checkpointing."""
    _check_layout(layout)
    return AttentiveClassifier(embed_dim, num_heads, depth, num_classes, layout, **kwargs)


class ProbeGrid(nn.Module):
    """Several probes (a V-JEPA 2 hyper-parameter grid) fed by one encoder pass: forward -> one logits per head."""

    def __init__(self, classifiers: Iterable[nn.Module]):
        super().__init__()
        self.classifiers = nn.ModuleList(classifiers)
        if len(self.classifiers) == 0:
            raise ValueError("a ProbeGrid needs at least one classifier")

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        return [c(tokens) for c in self.classifiers]
