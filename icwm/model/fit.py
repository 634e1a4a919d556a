"""In-context least squares: ridge regressions fitted, for every pair, to the pairs before it.

These are the exact, parameter-free parts of the heads' in-context fits. Statistics are accumulated with exclusive
prefix sums over the pair axis (dim 1), so pair ``p`` reads pairs ``< p`` only: block-causal like the trunk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from icwm.wireless.estimation import ridge_solve   # re-exported: the heads' fits and the classical ones share it


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


def ridge_prior(log_n0: torch.Tensor, slope: torch.Tensor, p: int) -> torch.Tensor:
    """Ridge weight of each pair, in samples: ``exp(log_n0 + slope / max(j, 1))`` for pair j (j earlier pairs): [P].

    A positive ``slope`` shrinks the fits made from one or two demonstrations harder than those made from many
    (a fit of F regressors from few samples is mostly noise), which keeps predictions improving from k = 0 to 1.
    """
    j = torch.arange(p, device=log_n0.device, dtype=log_n0.dtype).clamp_min(1.0)
    return torch.exp(log_n0 + slope / j)


def unit_ridge(reg: torch.Tensor, resid: torch.Tensor, n0: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """In-context ridge correction per fitting unit, with statistics partly pooled over the units.

    reg [B, P, U, sample, F] regressors and resid [B, P, U, sample, O] targets -> the correction
    [B, P, U, sample, O] = ``D_pu reg``, where ``D_pu`` is the ridge fit to pairs < p of unit u: its own statistics
    plus ``pool`` times their mean over the units, with a ridge worth ``n0[p]`` samples ([P] or [1]) at pair p's own
    regressor power in that unit (so the fit is invariant to the unit's scale). Pair 0 gets zero.
    """
    gram, cross = prefix_stats(reg, resid)                                       # [B, P, U, F, F], [.., O, F]
    gram, cross = gram + pool * gram.mean(2, keepdim=True), cross + pool * cross.mean(2, keepdim=True)
    power = reg.abs().pow(2).mean((-1, -2))                                      # [B, P, U]
    d = ridge_solve(gram, cross, n0[:, None] * power + 1e-12)                   # [B, P, U, O, F]
    return torch.einsum("bpuof,bpusf->bpuso", d, reg)
