"""4-bit NF4 backbone storage (bitsandbytes, CPU or GPU) and LoftQ initialisation (Zheng & Dai, Algorithm 1).

LoftQ alternates ``Q_t = NF4(W - L_{t-1})`` and ``L_t = SVD_r(W - Q_t)`` (rank-r truncated SVD), starting from
``L_0 = 0``, so that ``Q_T + L_T`` approximates ``W`` better than ``NF4(W)`` alone; ``L_T = s * B A`` is split
symmetrically (``sqrt`` of the singular values on each side) into the LoRA factors. peft's LoftQ helper needs CUDA;
this one runs wherever ``bitsandbytes.functional.quantize_4bit`` does (CPU included).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from adapters_llm.lora import dense_weight
from icwm.config import check


def _bnb():
    import bitsandbytes.functional as bnbF
    return bnbF


def nf4_roundtrip(W: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """NF4 quantise then dequantise: W [out, in] float -> [out, in] float32."""
    bnbF = _bnb()
    packed, state = bnbF.quantize_4bit(W.float().contiguous(), blocksize=blocksize, quant_type="nf4",
                                       compress_statistics=False)
    return bnbF.dequantize_4bit(packed, state).float()


@dataclass
class LoftQResult:
    """Output of :func:`loftq`.

    Attributes:
        residual: [out, in] float32, the matrix whose NF4 quantisation is the final ``Q`` (``W - L_{T-1}``).
        A: [rank, in] float32, B: [out, rank] float32 LoRA factors with ``s * B A = L_T``.
        errors: ``||W - Q_t - L_t||_F`` after each iteration t = 1..T.
    """

    residual: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    errors: list[float]


def loftq(W: torch.Tensor, rank: int, iters: int = 5, scaling: float = 1.0, blocksize: int = 64) -> LoftQResult:
    """LoftQ (Algorithm 1): alternate NF4 quantisation and rank-``rank`` SVD of the residual.

    Args:
        W: [out, in] float weight.
        rank: LoRA rank r. iters: T >= 1. scaling: LoRA scaling s = alpha / r. blocksize: NF4 block size.

    Returns:
        :class:`LoftQResult`.
    """
    check(iters >= 1, "adapter.loftq_iters", "an integer >= 1", iters)
    check(0 < rank <= min(W.shape), "adapter.rank", f"in [1, {min(W.shape)}]", rank)
    W = W.detach().float()
    low = torch.zeros_like(W)
    errors: list[float] = []
    for _ in range(iters):
        residual = W - low
        Q = nf4_roundtrip(residual, blocksize)
        U, S, Vh = torch.linalg.svd(W - Q, full_matrices=False)
        root = S[:rank].sqrt()
        B, A = U[:, :rank] * root, root[:, None] * Vh[:rank]   # [out, r], [r, in]
        low = B @ A
        errors.append(float(torch.linalg.matrix_norm(W - Q - low)))
    k = 1.0 / math.sqrt(scaling)
    return LoftQResult(residual=residual, A=A * k, B=B * k, errors=errors)


class _DequantMatmul(torch.autograd.Function):
    """``x @ W^T`` with ``W`` dequantised on the fly in forward AND backward (the float weight is never saved)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: "NF4Linear") -> torch.Tensor:
        ctx.layer = layer
        return x @ layer.dequantize(x.dtype).T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.layer.dequantize(grad.dtype), None


class NF4Linear(nn.Module):
    """Frozen 4-bit NF4 storage of a dense layer's weight (bitsandbytes packing, fp32 per-block absmax).

    Args:
        weight: [out, in] float weight to store.
        bias: optional [out] bias (kept frozen in its dtype).
        blocksize: NF4 block size (64 in Zheng & Dai).
    """

    quantized = True

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, blocksize: int = 64) -> None:
        super().__init__()
        bnbF = _bnb()
        packed, state = bnbF.quantize_4bit(weight.detach().float().contiguous(), blocksize=blocksize,
                                           quant_type="nf4", compress_statistics=False)
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.blocksize = blocksize
        self.register_buffer("qweight", packed)          # [out * in / 2, 1] uint8
        self.register_buffer("absmax", state.absmax)     # [out * in / blocksize] float32
        self.register_buffer("code", state.code)         # [16] float32 NF4 levels
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_dense(cls, module: nn.Module, blocksize: int = 64, weight: Optional[torch.Tensor] = None) -> "NF4Linear":
        """NF4 storage of a Linear / Conv1D (``weight`` [out, in] overrides its weight, e.g. a LoftQ residual)."""
        w = dense_weight(module) if weight is None else weight
        return cls(w, getattr(module, "bias", None), blocksize)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Float weight [out, in] in ``dtype``."""
        bnbF = _bnb()
        state = bnbF.QuantState(absmax=self.absmax, shape=torch.Size((self.out_features, self.in_features)),
                                code=self.code, blocksize=self.blocksize, quant_type="nf4", dtype=torch.float32)
        return bnbF.dequantize_4bit(self.qweight, state).to(dtype)

    def storage_bytes(self) -> int:
        """Bytes of the 4-bit weight storage (packed codes + absmax), bias excluded."""
        return self.qweight.numel() * self.qweight.element_size() + self.absmax.numel() * self.absmax.element_size()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in] -> [..., out] in x's dtype."""
        out = _DequantMatmul.apply(x, self)
        return out if self.bias is None else out + self.bias.to(out.dtype)
