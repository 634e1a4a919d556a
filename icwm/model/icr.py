"""In-context ridge regression (ICR): the one closed-form in-context component, shared by the task families.

For every pair ``p`` of an episode, a linear map from regressors to targets is fitted by ridge regression to the
pairs before it and applied to pair ``p``'s own regressors. Statistics are accumulated with exclusive prefix sums
over the pair axis (dim 1), so pair ``p`` reads pairs ``< p`` only: block-causal like the trunk. What a family
regresses on what is listed in its module (det: symbols on received samples; ce / cp / pf: the label grid's
residual on pilot windows, histories or the UL band; de / pe: the label's residual on learned features). The fit
itself is exact least squares; its ridge and the pooling over fitting units are trained parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from icwm.model.config import ModelConfig
from icwm.wireless.estimation import ridge_solve


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


class InContextRidge(nn.Module):
    """Ridge fit per pair to the earlier pairs, per fitting unit, with statistics partly pooled over the units.

    Pair ``p`` (``j = p`` earlier pairs) uses a ridge worth ``n0_j = exp(log_n0 + slope / max(j, 1))`` samples at
    its own regressor power in the unit (so the fit is invariant to the unit's scale; a positive slope shrinks fits
    from one or two demonstrations harder), and the statistics of its unit plus ``exp(log_pool)`` times their mean
    over all units. ``log_n0`` starts at ``log(cfg.icr_n0)``, ``slope`` at 0, ``log_pool`` at ``log(cfg.icr_pool)``;
    all three are trained. Pair 0 gets zero.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.log_n0 = nn.Parameter(torch.full((1,), math.log(cfg.icr_n0)))   # [1]: DeepSpeed broadcasts 1-d tensors
        self.slope = nn.Parameter(torch.zeros(1))
        self.log_pool = nn.Parameter(torch.full((1,), math.log(cfg.icr_pool)))

    def ridge(self, p: int) -> torch.Tensor:
        """Ridge weight of each pair, in samples: [P]."""
        j = torch.arange(p, device=self.log_n0.device, dtype=self.log_n0.dtype).clamp_min(1.0)
        return torch.exp(self.log_n0 + self.slope / j)

    def forward(self, reg: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """reg [B, P, U, sample, F] regressors, target [B, P, U, sample, O] -> fitted values [B, P, U, sample, O].

        Pair p's map is fitted to the (reg, target) samples of pairs < p of its unit (and the pooled units) and
        applied to pair p's ``reg``; ``target`` of pairs >= p never enters pair p's output.
        """
        gram, cross = prefix_stats(reg, target)                                  # [B, P, U, F, F], [.., O, F]
        if reg.shape[2] > 1:
            pool = torch.exp(self.log_pool).to(gram.real.dtype)
            gram, cross = gram + pool * gram.mean(2, keepdim=True), cross + pool * cross.mean(2, keepdim=True)
        power = reg.abs().pow(2).mean((-1, -2))                                  # [B, P, U]
        n0 = self.ridge(reg.shape[1]).to(power.dtype)
        d = ridge_solve(gram, cross, n0[:, None] * power + 1e-12)              # [B, P, U, O, F]
        return torch.einsum("bpuof,bpusf->bpuso", d, reg)
