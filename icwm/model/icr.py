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

    Pair ``p`` (``j = p`` earlier pairs) uses a ridge worth ``n0_j = exp(log_n0 + slope / max(j, 1) [+ table_j])``
    samples at its own regressor power in the unit (so the fit is invariant to the unit's scale; a positive slope
    shrinks fits from one or two demonstrations harder), and the statistics of its unit plus ``exp(log_pool)`` times
    their mean over all units. ``log_n0`` starts at ``log(cfg.icr_n0)``, ``slope`` at 0, ``log_pool`` at
    ``log(cfg.icr_pool)``; with ``cfg.icr_ridge_table`` a ``table`` [k_max + 1] of per-j offsets starts at 0, with
    ``cfg.icr_pool_table`` a ``pool_table`` [k_max + 1] of per-j offsets of ``log_pool`` too. All are trained. Pair 0
    gets zero. With ``residual`` the ridge is also scaled per batch row (an episode: one link) by ``rho^w_j``: rho
    the row's relative residual of that first fit on the earlier pairs (``relative_residual``, floored at
    ``cfg.icr_residual_floor``, no gradient), ``w`` [k_max + 1] a trained exponent per j (starts at 0), and the fit
    is solved again; a link that fits well (high SNR) can so get a weaker ridge than one that does not. With
    ``form_table`` a second table [k_max + 1] of per-j log-ridge offsets (from 0, trained) applies to the batches the
    caller marks ``unstated`` (the given form: no stated nominal), so the two forms can regularise differently.
    """

    def __init__(self, cfg: ModelConfig, residual: bool = False, form_table: bool = False) -> None:
        super().__init__()
        self.log_n0 = nn.Parameter(torch.full((1,), math.log(cfg.icr_n0)))   # [1]: DeepSpeed broadcasts 1-d tensors
        self.slope = nn.Parameter(torch.zeros(1))
        self.log_pool = nn.Parameter(torch.full((1,), math.log(cfg.icr_pool)))
        self.table = nn.Parameter(torch.zeros(cfg.k_max + 1)) if cfg.icr_ridge_table else None
        self.pool_table = nn.Parameter(torch.zeros(cfg.k_max + 1)) if cfg.icr_pool_table else None
        self.resid_w = nn.Parameter(torch.zeros(cfg.k_max + 1)) if residual else None
        self.resid_floor = cfg.icr_residual_floor
        self.form_table = nn.Parameter(torch.zeros(cfg.k_max + 1)) if form_table else None

    def ridge(self, p: int, unstated: bool = False) -> torch.Tensor:
        """Ridge weight of each pair, in samples: [P] (``unstated``: with the ``form_table`` offsets)."""
        j = torch.arange(p, device=self.log_n0.device, dtype=self.log_n0.dtype).clamp_min(1.0)
        log_n0 = self.log_n0 + self.slope / j
        if self.table is not None:
            log_n0 = log_n0 + self.table[:p]
        if unstated and self.form_table is not None:
            log_n0 = log_n0 + self.form_table[:p]
        return torch.exp(log_n0)

    def pooling(self, p: int) -> torch.Tensor:
        """Pooling weight of each pair's statistics' mean over the units: [P]."""
        log_pool = self.log_pool.expand(p) if self.pool_table is None else self.log_pool + self.pool_table[:p]
        return torch.exp(log_pool)

    def forward(self, reg: torch.Tensor, target: torch.Tensor, unstated: bool = False) -> torch.Tensor:
        """reg [B, P, U, sample, F] regressors, target [B, P, U, sample, O] -> fitted values [B, P, U, sample, O].

        Pair p's map is fitted to the (reg, target) samples of pairs < p of its unit (and the pooled units) and
        applied to pair p's ``reg``; ``target`` of pairs >= p never enters pair p's output. ``unstated``: the batch
        states no nominal (``form_table``).
        """
        return torch.einsum("bpuof,bpusf->bpuso", self.maps(reg, target, unstated=unstated), reg)

    def maps(self, reg: torch.Tensor, target: torch.Tensor, own_power: bool = True,
             unstated: bool = False) -> torch.Tensor:
        """The fitted linear maps themselves: reg [B, P, U, sample, F], target [B, P, U, sample, O] -> [B, P, U, O, F]
        (pair p's from pairs < p; zeros for pair 0); ``forward`` applies them to each pair's own regressors.

        The ridge's power scale is pair p's own regressors' (``own_power``) or, where those are a label (det's
        channel fit regresses on the symbols), the mean power of the earlier pairs' regressors.
        """
        gram, cross = prefix_stats(reg, target)                                  # [B, P, U, F, F], [.., O, F]
        if own_power:
            power = reg.abs().pow(2).mean((-1, -2))                              # [B, P, U]
        else:
            n = torch.arange(reg.shape[1], device=reg.device).clamp_min(1) * reg.shape[-2] * reg.shape[-1]
            power = gram.diagonal(dim1=-2, dim2=-1).real.sum(-1) / n[None, :, None]
        if reg.shape[2] > 1:
            pool = self.pooling(reg.shape[1]).to(gram.real.dtype)[:, None, None, None]       # [P, 1, 1, 1]
            gram, cross = gram + pool * gram.mean(2, keepdim=True), cross + pool * cross.mean(2, keepdim=True)
        ridge = self.ridge(reg.shape[1], unstated).to(power.dtype)[:, None] * power   # [B, P, U]
        if self.resid_w is None:
            return ridge_solve(gram, cross, ridge + 1e-12)                       # [B, P, U, O, F]
        with torch.no_grad():                                                    # rho carries no gradient
            first = ridge_solve(gram, cross, ridge + 1e-12)
            rho = relative_residual(reg, target, first).clamp_min(self.resid_floor)          # [B, P]
        scale = torch.exp(self.resid_w[:reg.shape[1]].to(rho.dtype) * rho.log())[..., None]  # [B, P, 1]
        return ridge_solve(gram, cross, ridge * scale + 1e-12)


def prefix_residual_power(reg: torch.Tensor, target: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Residual power of each pair's fit on the samples it was fitted to (pairs < p), per target entry.

    ``sum_{q < p, s} |target_qs - maps_p reg_qs|^2 / (O * max(n_p - F, 1))`` with ``n_p`` the earlier samples, the
    degrees-of-freedom correction of least squares (exact for an unregularised fit; the ridge makes it slightly high).

    Args:
        reg: [B, P, U, sample, F]; target: [B, P, U, sample, O]; maps: [B, P, U, O, F] (``InContextRidge.maps``).
    Returns:
        [B, P, U] float, 0 for pair 0.
    """
    p, s, f = reg.shape[1], reg.shape[-2], reg.shape[-1]
    fitted = torch.einsum("bpuof,bqusf->bpquso", maps, reg)                     # pair p's map on pair q's samples
    res = (target[:, None] - fitted).abs().pow(2).sum((-1, -2))                # [B, P, Q, U]
    earlier = torch.ones(p, p, device=reg.device, dtype=torch.bool).tril(-1)  # [P, Q]: q < p
    energy = (res * earlier[None, :, :, None]).sum(2)                           # [B, P, U]
    n = torch.arange(p, device=reg.device, dtype=energy.dtype) * s             # [P] earlier samples
    return energy / (target.shape[-1] * (n - f).clamp_min(1.0))[None, :, None]


def relative_residual(reg: torch.Tensor, target: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Each batch row's residual power of its fits on the earlier pairs over those pairs' target power, all units.

    Args:
        reg: [B, P, U, sample, F]; target: [B, P, U, sample, O]; maps: [B, P, U, O, F] (``InContextRidge.maps``).
    Returns:
        [B, P] float (``prefix_residual_power`` over the earlier targets' mean power; 0 for pair 0).
    """
    n = torch.arange(reg.shape[1], device=reg.device).clamp_min(1) * target.shape[-2] * target.shape[-1]
    power = exclusive_cumsum(target.abs().pow(2).sum((-1, -2))).mean(2) / n                  # [B, P]
    return prefix_residual_power(reg, target, maps).mean(2) / (power + 1e-30)
