"""Pre-norm transformer over in-context episodes: RMSNorm, SwiGLU, RoPE over the pair index, block-causal SDPA.

A sequence is ``k + 1`` pairs laid out as ``[x_0 (n_x tokens), y_0 (n_y tokens), x_1, y_1, ...]``. Every token of pair
``i`` sees all tokens of pairs ``< i``; x-tokens of pair ``i`` also see the x-tokens of pair ``i`` (never ``y_i``);
y-tokens of pair ``i`` see the whole pair ``i``. So one forward pass yields a prediction for every pair.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from icwm.model.config import ModelConfig


@functools.lru_cache(maxsize=64)
def _mask_cpu(n_pairs: int, n_x: int, n_y: int) -> torch.Tensor:
    per = n_x + n_y
    pair = torch.arange(n_pairs * per) // per          # [token] pair index
    is_y = (torch.arange(n_pairs * per) % per) >= n_x   # [token] role
    earlier = pair[None, :] < pair[:, None]             # [query, key] key in an earlier pair
    same = pair[None, :] == pair[:, None]
    return earlier | (same & (~is_y[None, :] | is_y[:, None]))


def block_causal_mask(n_pairs: int, n_x: int, n_y: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean attention mask (True = may attend), cached per (n_pairs, n_x, n_y).

    Returns:
        mask: [token, token] bool, token = n_pairs * (n_x + n_y), rows are queries.
    """
    return _mask_cpu(n_pairs, n_x, n_y).to(device)


def pair_positions(n_pairs: int, n_x: int, n_y: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pair index of every token: [token] int64."""
    return torch.arange(n_pairs, device=device).repeat_interleave(n_x + n_y)


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (no centring), learned gain."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] -> [..., dim]."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(pos: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin tables of rotary embeddings.

    Args:
        pos: [token] positions (here: pair indices).
    Returns:
        cos, sin: [token, head_dim // 2].
    """
    inv = base ** (-torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim)
    ang = pos.float()[:, None] * inv[None, :]  # [token, head_dim/2]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs of x: [batch, head, token, head_dim] by the tables [token, head_dim/2]."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class Attention(nn.Module):
    """Multi-head self-attention with RoPE (``rope`` None: none), through ``F.scaled_dot_product_attention``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = cfg.n_heads, cfg.head_dim, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple | None) -> torch.Tensor:
        """x: [batch, token, d_model], mask: [token, token] bool -> [batch, token, d_model]."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [b, h, t, hd] each
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class SwiGLU(nn.Module):
    """Gated feed-forward: W2 (silu(W1 x) * W3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] -> [..., dim]."""
        a, g = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(a) * g)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm x); x + ffn(norm x)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ffn = SwiGLU(cfg.d_model, cfg.ffn_hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rope: tuple | None) -> torch.Tensor:
        """x: [batch, token, d_model] -> same."""
        x = x + self.drop(self.attn(self.norm1(x), mask, rope))
        return x + self.drop(self.ffn(self.norm2(x)))


class EpisodeTransformer(nn.Module):
    """Stack of blocks over an episode laid out pair by pair, with a block-causal mask."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, n_pairs: int, n_x: int, n_y: int) -> torch.Tensor:
        """x: [batch, n_pairs * (n_x + n_y), d_model] -> same (final-normed)."""
        mask = block_causal_mask(n_pairs, n_x, n_y, x.device)
        pos = pair_positions(n_pairs, n_x, n_y, x.device)
        rope = rope_tables(pos, self.cfg.head_dim, self.cfg.rope_base, x.dtype)
        for blk in self.blocks:
            x = blk(x, mask, rope)
        return self.norm(x)
