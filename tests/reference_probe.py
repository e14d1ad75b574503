"""An independent, literal transcription of the official frozen-eval probe modules and ClipAggregation.

For tests only: the yardstick our `jepa_scale.models.attentive_pooler` and `clip_aggregation` are checked against.
Transcribed module by module, with the official constructor signatures, attribute names, forward math and init
order, so a state dict of these classes is what an official probe file holds (before DDP's `module.` prefix):

- V-JEPA 1 (`src/models/utils/modules.py`, `src/models/attentive_pooler.py`, as released after the revert of the
  "use projection in CrossAttention" change): `CrossAttention.proj` is built but not applied; extra blocks run on
  the query after the cross-attention; rescale by sqrt(2 * layer_id), extra blocks from layer_id 2.
- V-JEPA 2 (the same files in vjepa2): no `proj`; extra blocks run on the tokens first (optionally under
  torch.utils.checkpoint); the cross block's fc2 reuses the last loop index.
- `ClipAggregation.forward` (V-JEPA 1 `evals/video_classification_frozen/utils.py`; V-JEPA 2
  `modelcustom/vit_encoder_multiclip.py`, which always attends across segments), without the 1-D temporal
  pos-embed branch that no official config enables.

Where the two generations' files say the same, one class serves both and a V-JEPA 2 subclass overrides only what
differs. Left out: dropout layers at p=0 (identities), the `torch.backends.cuda.sdp_kernel()` context (a deprecated
no-op with default arguments), `complete_block=False` and RoPE/SwiGLU branches no probe uses.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    # src/utils/tensors.py: absolute bounds a, b
    def norm_cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    with torch.no_grad():
        lo, up = norm_cdf((a - mean) / std), norm_cdf((b - mean) / std)
        tensor.uniform_(2 * lo - 1, 2 * up - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
        return tensor


class MLP(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ------------------------------------------------- modules.py (V-JEPA 1; V-JEPA 2 differs where its subclass says)


class V1Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0, use_sdpa=True):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop_prob = proj_drop
        self.use_sdpa = use_sdpa

    def forward(self, x, mask=None):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.use_sdpa:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.proj_drop_prob)
            attn = None
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            attn = attn.softmax(dim=-1)
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x, attn


class V2Attention(V1Attention):
    # V-JEPA 2: returns only x; its attn_mask / is_causal arguments are never set by the probes
    def forward(self, x, mask=None, attn_mask=None):
        assert attn_mask is None
        return super().forward(x)[0]


class V1Block(nn.Module):
    attention_cls = V1Attention

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None, drop=0.0, attn_drop=0.0,
                 act_layer=nn.GELU, norm_layer=nn.LayerNorm, grid_size=None, grid_depth=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = self.attention_cls(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                       attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = MLP(in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer, drop=drop)

    def forward(self, x, return_attention=False, mask=None):
        y, attn = self.attn(self.norm1(x), mask=mask)
        if return_attention:
            return attn
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x


class V2Block(V1Block):
    # V-JEPA 2: same modules (drop_path 0 is an identity); forward(x, mask, attn_mask, ...), as the checkpoint call
    attention_cls = V2Attention

    def forward(self, x, mask=None, attn_mask=None, T=None, H_patches=None, W_patches=None):
        y = self.attn(self.norm1(x), mask=mask, attn_mask=attn_mask)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x


class CrossAttention(nn.Module):
    # v1_proj: V-JEPA 1 builds `self.proj` (and never applies it); in V-JEPA 2 that line is commented out
    def __init__(self, dim, num_heads=12, qkv_bias=False, use_sdpa=True, v1_proj=True):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, int(dim * 2), bias=qkv_bias)
        if v1_proj:
            self.proj = nn.Linear(dim, dim)
        self.use_sdpa = use_sdpa

    def forward(self, q, x):
        B, n, C = q.shape
        q = self.q(q).reshape(B, n, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        B, N, C = x.shape
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        if self.use_sdpa:
            q = F.scaled_dot_product_attention(q, k, v)
        else:
            xattn = (q @ k.transpose(-2, -1)) * self.scale
            xattn = xattn.softmax(dim=-1)
            q = xattn @ v
        q = q.transpose(1, 2).reshape(B, n, C)
        return q  # the released V-JEPA 1 code does not apply self.proj either


class CrossAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, act_layer=nn.GELU, norm_layer=nn.LayerNorm,
                 v1_proj=True):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.xattn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, v1_proj=v1_proj)
        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = MLP(in_features=dim, hidden_features=mlp_hidden_dim, act_layer=act_layer)

    def forward(self, q, x):
        y = self.xattn(q, self.norm1(x))
        q = q + y
        q = q + self.mlp(self.norm2(q))
        return q


# ---------------------------------------------------------------------------------------------- attentive_pooler.py


def _init_weights(m, init_std):
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=init_std)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


def _rescale(param, layer_id):
    param.div_(math.sqrt(2.0 * layer_id))


class V1AttentivePooler(nn.Module):
    block_cls, v1_proj = V1Block, True

    def __init__(self, num_queries=1, embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=1, norm_layer=nn.LayerNorm,
                 init_std=0.02, qkv_bias=True, complete_block=True, use_activation_checkpointing=False):
        # use_activation_checkpointing: a V-JEPA 2 argument only
        super().__init__()
        assert complete_block
        self.use_activation_checkpointing = use_activation_checkpointing
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.complete_block = complete_block
        self.cross_attention_block = CrossAttentionBlock(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                                         qkv_bias=qkv_bias, norm_layer=norm_layer,
                                                         v1_proj=self.v1_proj)
        self.blocks = None
        if depth > 1:
            self.blocks = nn.ModuleList([
                self.block_cls(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                               qk_scale=False, norm_layer=norm_layer)
                for i in range(depth - 1)])
        self.init_std = init_std
        trunc_normal_(self.query_tokens, std=self.init_std)
        self.apply(lambda m: _init_weights(m, self.init_std))
        self._rescale_blocks()

    def _rescale_blocks(self):
        _rescale(self.cross_attention_block.xattn.proj.weight.data, 1)
        _rescale(self.cross_attention_block.mlp.fc2.weight.data, 1)
        if self.blocks is not None:
            for layer_id, layer in enumerate(self.blocks, 1):
                _rescale(layer.attn.proj.weight.data, layer_id + 1)
                _rescale(layer.mlp.fc2.weight.data, layer_id + 1)

    def forward(self, x):
        q = self.query_tokens.repeat(len(x), 1, 1)
        q = self.cross_attention_block(q, x)
        if self.blocks is not None:
            for blk in self.blocks:
                q = blk(q)
        return q


class V2AttentivePooler(V1AttentivePooler):
    block_cls, v1_proj = V2Block, False

    def _rescale_blocks(self):
        layer_id = 0
        if self.blocks is not None:
            for layer_id, layer in enumerate(self.blocks):
                _rescale(layer.attn.proj.weight.data, layer_id + 1)
                _rescale(layer.mlp.fc2.weight.data, layer_id + 1)
        _rescale(self.cross_attention_block.mlp.fc2.weight.data, layer_id + 1)

    def forward(self, x):
        if self.blocks is not None:
            for blk in self.blocks:
                if self.use_activation_checkpointing:
                    x = torch.utils.checkpoint.checkpoint(blk, x, False, None, use_reentrant=False)
                else:
                    x = blk(x)
        q = self.query_tokens.repeat(len(x), 1, 1)
        q = self.cross_attention_block(q, x)
        return q


class V1AttentiveClassifier(nn.Module):
    pooler_cls = V1AttentivePooler

    def __init__(self, embed_dim=768, num_heads=12, mlp_ratio=4.0, depth=1, norm_layer=nn.LayerNorm, init_std=0.02,
                 qkv_bias=True, num_classes=1000, complete_block=True, use_activation_checkpointing=False):
        super().__init__()
        self.pooler = self.pooler_cls(num_queries=1, embed_dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                      depth=depth, norm_layer=norm_layer, init_std=init_std, qkv_bias=qkv_bias,
                                      complete_block=complete_block,
                                      use_activation_checkpointing=use_activation_checkpointing)
        self.linear = nn.Linear(embed_dim, num_classes, bias=True)  # default nn.Linear init: never re-initialised

    def forward(self, x):
        x = self.pooler(x).squeeze(1)
        x = self.linear(x)
        return x


class V2AttentiveClassifier(V1AttentiveClassifier):
    pooler_cls = V2AttentivePooler


# ---------------------------------------------------------------------------------------------- ClipAggregation


class V1ClipAggregation(nn.Module):
    """V-JEPA 2's `vit_encoder_multiclip.ClipAggregation` is this forward's attend-across path, unchanged."""

    def __init__(self, model, tubelet_size=2, max_frames=10000, use_pos_embed=False, attend_across_segments=False):
        super().__init__()
        assert not use_pos_embed
        self.model = model
        self.tubelet_size = tubelet_size
        self.embed_dim = model.embed_dim
        self.num_heads = model.num_heads
        self.attend_across_segments = attend_across_segments
        self.pos_embed = None

    def forward(self, x, clip_indices=None):
        num_clips = len(x)
        num_views_per_clip = len(x[0])
        B, C, T, H, W = x[0][0].size()

        x = [torch.cat(xi, dim=0) for xi in x]
        x = torch.cat(x, dim=0)
        outputs = self.model(x)
        _, N, D = outputs.size()

        T = T // self.tubelet_size
        N = N // T

        eff_B = B * num_views_per_clip
        all_outputs = [[] for _ in range(num_views_per_clip)]
        for i in range(num_clips):
            o = outputs[i * eff_B:(i + 1) * eff_B]
            for j in range(num_views_per_clip):
                all_outputs[j].append(o[j * B:(j + 1) * B])

        if not self.attend_across_segments:
            return all_outputs  # [view][segment] -> [B, N, D]

        for i, outputs in enumerate(all_outputs):
            outputs = [o.reshape(B, T, N, D) for o in outputs]
            outputs = torch.cat(outputs, dim=1).flatten(1, 2)
            all_outputs[i] = outputs
        return all_outputs


def V2ClipAggregation(model, tubelet_size=2, max_frames=128, use_pos_embed=False):
    return V1ClipAggregation(model, tubelet_size, max_frames, use_pos_embed, attend_across_segments=True)
