"""In-context least squares: ridge regressions fitted, for every pair, to the pairs before it.

These are the exact, parameter-free parts of the heads' in-context fits. Statistics are accumulated with exclusive
prefix sums over the pair axis (dim 1), so pair ``p`` reads pairs ``< p`` only: block-causal like the trunk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def exclusive_cumsum(a: torch.Tensor) -> torch.Tensor:
    """Sums over pairs ``< p`` along dim 1: [B, P, ...] -> [B, P, ...] (pair 0 gets zeros)."""
    return torch.cumsum(F.pad(a, (0,) * (2 * a.dim() - 4) + (1, -1)), 1)


def prefix_stats(feat: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram and cross statistics of the earlier pairs.

    feat [B, P, ..., sample, F] regressors, target [B, P, ..., sample, O] -> (gram [B, P, ..., F, F] = sum f f^H,
    cross [B, P, ..., O, F] = sum r f^H), both summed over the samples of pairs < p.
    """
    gram = torch.einsum("...sf,...sg->...fg", feat, feat.conj())
    cross = torch.einsum("...so,...sf->...of", target, feat.conj())
    return exclusive_cumsum(gram), exclusive_cumsum(cross)


def ridge_solve(gram: torch.Tensor, cross: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Coefficients ``D = cross (gram + lam I)^-1``: gram [..., F, F], cross [..., O, F], lam [...] -> [..., O, F]."""
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return torch.linalg.solve(gram + lam[..., None, None] * eye, cross.mH).mH
