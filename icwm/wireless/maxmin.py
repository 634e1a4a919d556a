"""Optimal max-min SINR precoding (common SINR maximised under the total power ``p``, noise variance 1).

Uplink-downlink duality: the downlink max-min SINR with total power ``p`` equals the uplink one with total uplink
power ``p``, achieved by MMSE receivers ``v_k = (I + sum_j lam_j h_j^H h_j)^{-1} h_k^H`` used as downlink
directions (the optimal structure of Bjornson et al. 2014, ``lam`` = uplink powers).

1. Uplink: the normalised fixed point (Schubert & Boche 2004; Nuzman 2007) ``lam <- p f / sum(f)`` with
   ``f_k = lam_k / SINR_k = (1 - lam_k t_k) / t_k`` and ``t_k = h_k (I + sum_j lam_j h_j^H h_j)^{-1} h_k^H =
   [G (I + Lam G)^{-1}]_kk``; at its fixed point every user has the same uplink SINR ``lam_k t_k / (1 - lam_k t_k)``.
   (The variant ``f = 1/t`` has the same fixed point but converges 10-1000x slower.) Gram space, batched.
2. Downlink: with the unit-norm directions fixed, the common SINR ``gamma`` is found by bisection so that the
   powers ``q(gamma) = (diag(Psi_kk)/gamma - Psi_off)^{-1} 1`` (all SINRs exactly ``gamma``) use exactly ``p``.

``min_power_lambda`` is the duality feasibility test (power minimisation for SINR targets) used to check optimality.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from icwm.config import check
from icwm.wireless.precoding import (_check_demos, _split_lam_p, _structure_gram, as_power, check_channel, fit_demos_db,
                                     gram, power_of, sinr, sinr_gram)

__all__ = ["MaxMinResult", "maxmin_sinr", "min_power_lambda", "uplink_gains", "balance_residual", "fit_snr_db"]


class MaxMinResult(NamedTuple):
    """Solution of ``maxmin_sinr``.

    Attributes:
        W: [..., ant, user] complex precoder, ``||W||_F^2 = p``, all SINRs equal.
        lam_p: [..., user, 2] real normalised optimal-structure parameters (lam_k / p, p_k / p).
        sinr_db: [...] real, the common (= minimum) downlink SINR in dB of ``W``.
    """

    W: torch.Tensor
    lam_p: torch.Tensor
    sinr_db: torch.Tensor


def uplink_gains(G: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``t_k = [G (I + Lam G)^{-1}]_kk`` (MMSE gain of user k with all users' uplink powers ``lam``).

    Args:
        G: [..., user, user] complex.  lam: [..., user] real, >= 0.
    Returns:
        t: [..., user] real, positive.
    """
    K = G.shape[-1]
    eye = torch.eye(K, dtype=G.dtype, device=G.device)
    M = eye + lam[..., :, None].to(G.dtype) * G
    X = torch.linalg.solve(M.mT, G.mT).mT  # G (I + Lam G)^{-1}
    return torch.diagonal(X, dim1=-2, dim2=-1).real


def _uplink_fixed_point(G: torch.Tensor, p: torch.Tensor, tol_db: float, max_iter: int) -> torch.Tensor:
    """Balanced uplink powers ``lam: [..., user]`` with ``sum lam = p`` (normalised fixed point). Each sample stops
    at its own first balanced iterate, so its answer does not depend on the other samples of the batch."""
    K = G.shape[-1]
    lam = (p / K)[..., None].expand(G.shape[:-1]).clone()
    done = torch.zeros(G.shape[:-2], dtype=torch.bool, device=G.device)
    for _ in range(max_iter):
        t = uplink_gains(G, lam)
        x = (lam * t).clamp(max=1.0 - 1e-7)
        ul_db = 10.0 * torch.log10(x / (1.0 - x))
        done = done | ((ul_db.amax(-1) - ul_db.amin(-1)) < tol_db)
        if bool(done.all()):
            break
        f = ((1.0 - lam * t) / t).clamp_min(torch.finfo(t.dtype).tiny)  # lam_k / SINR_k (uplink)
        lam = torch.where(done[..., None], lam, p[..., None] * f / f.sum(-1, keepdim=True))
    return lam


def _downlink_powers(F: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Powers ``q: [..., user]`` giving every user SINR ``gamma`` with unit-norm directions, effective gains
    ``Psi = |F|^2`` (``F = G B``, ``B`` unit-norm columns): ``(diag(Psi_kk)/gamma - Psi_off) q = 1``."""
    psi = F.real.square() + F.imag.square()
    diag = torch.diagonal(psi, dim1=-2, dim2=-1)
    M = torch.diag_embed(diag / gamma[..., None]) - (psi - torch.diag_embed(diag))
    return torch.linalg.solve(M, torch.ones_like(diag)[..., None])[..., 0]


def _balance_downlink(F: torch.Tensor, p: torch.Tensor, gamma_max: torch.Tensor, steps: int = 80) -> torch.Tensor:
    """Common downlink SINR ``gamma: [...]`` with ``sum q(gamma) = p`` by bisection (feasible side returned).

    ``gamma_max`` must bound the answer from above (the single-user bound ``p min_k G_kk`` does)."""
    lo = torch.zeros_like(gamma_max)
    hi = gamma_max.clone()
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        q = _downlink_powers(F, mid)
        ok = (q >= 0).all(-1) & (q.sum(-1) <= p) & torch.isfinite(q).all(-1)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return lo


def maxmin_sinr(h: torch.Tensor, p: float | torch.Tensor, tol: float = 1e-3, max_iter: int = 2000) -> MaxMinResult:
    """Optimal max-min SINR downlink precoder (batched, Gram space; K x K work in complex128, outputs in h's dtype).

    Args:
        h: [..., user, ant] complex.  p: float or [...] total power (noise variance 1).
        tol: stop the uplink fixed point when the users' uplink SINRs are within ``tol`` dB (every sample).
        max_iter: cap on fixed-point iterations.
    Returns:
        MaxMinResult(W [..., ant, user], lam_p [..., user, 2], sinr_db [...]).
    """
    check_channel(h)
    check(tol > 0, "tol", "a positive tolerance in dB", tol)
    check(isinstance(max_iter, int) and max_iter >= 1, "max_iter", "an integer >= 1", max_iter)
    h64 = h.to(torch.complex128)  # K x K work in double precision, outputs in h's dtype
    pt = as_power(p, h.shape[:-2], h64)
    G = gram(h64)
    lam = _uplink_fixed_point(G, pt, tol, max_iter)
    Bu = _structure_gram(G, lam, torch.ones_like(lam))  # unit-norm MMSE directions
    single_user = pt * torch.diagonal(G, dim1=-2, dim2=-1).real.amin(-1)   # SINR_k <= p ||h_k||^2
    gamma = _balance_downlink(G @ Bu, pt, single_user)
    q = _downlink_powers(G @ Bu, gamma).clamp_min(0.0)
    q = q * (pt / q.sum(-1))[..., None]  # exact budget (a no-op up to the bisection's resolution)
    W = h.mH @ (Bu * torch.sqrt(q)[..., None, :]).to(h.dtype)
    W = W * torch.sqrt(pt.to(W.real.dtype) / power_of(W))[..., None, None].to(h.dtype)  # rounding of unit norms
    lam_p = torch.stack([lam / lam.sum(-1, keepdim=True), q / pt[..., None]], -1).to(h.real.dtype)
    return MaxMinResult(W, lam_p, 10.0 * torch.log10(sinr(h, W).amin(-1)))


def min_power_lambda(G: torch.Tensor, gamma: torch.Tensor, iters: int = 500) -> torch.Tensor:
    """Uplink powers of the power-minimisation fixed point ``lam_k <- gamma_k / ((1 + gamma_k) t_k(lam))`` from 0.

    The iterates increase monotonically to the minimal total power that gives every user SINR ``gamma_k`` (equal to
    the downlink minimum by duality); if the targets are infeasible they grow without bound. So ``sum lam > p`` at
    any iterate proves the targets infeasible with power ``p``; convergence with ``sum lam <= p`` proves feasible.

    Args:
        G: [..., user, user] complex.  gamma: [..., user] or [...] real SINR targets (linear).  iters: iterations.
    Returns:
        lam: [..., user] real after ``iters`` iterations (inf-free: capped at 1e30).
    """
    gam = gamma if gamma.dim() == G.dim() - 1 else gamma[..., None].expand(G.shape[:-1])
    lam = torch.zeros(G.shape[:-1], dtype=G.real.dtype, device=G.device)
    for _ in range(iters):
        lam = (gam / ((1.0 + gam) * uplink_gains(G, lam))).clamp(max=1e30)
    return lam


def balance_residual(G: torch.Tensor, lam_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """How far a normalised max-min label is from balanced when rendered at the power ``p``: the variance over users
    of the uplink SINRs (dB) with powers ``p lam_p[:, 0]`` plus that of the downlink SINRs of the structure
    precoder (``p lam_p[:, 1]``). Both vanish at the label's own power; the uplink SINRs scale alike only in the
    noise-free limit, so the residual pins ``p`` down wherever the optimum depends on it.

    Args:
        G: [..., user, user] complex.  lam_p: [..., user, 2] real, normalised.  p: [...] real (broadcastable).
    Returns:
        residual: [...] real, dB^2.
    """
    lam, pk = _split_lam_p(lam_p.to(p.dtype), p, G.shape[-1])
    x = (lam * uplink_gains(G, lam)).clamp(1e-30, 1.0 - 1e-12)
    ul_db = 10.0 * torch.log10(x / (1.0 - x))
    dl_db = 10.0 * torch.log10(sinr_gram(G, _structure_gram(G, lam, pk)).clamp_min(1e-30))
    return ul_db.var(-1, unbiased=False) + dl_db.var(-1, unbiased=False)


def fit_snr_db(h: torch.Tensor, lam_p: torch.Tensor, lo_db: float = -15.0, hi_db: float = 40.0) -> torch.Tensor:
    """SNR (dB) shared by demonstrations whose labels are max-min optima: ``precoding.fit_demos_db`` on the
    ``balance_residual`` (K x K work in double precision).

    Args:
        h: [..., demo, user, ant] complex.  lam_p: [..., demo, user, 2] real, normalised max-min labels.
        lo_db, hi_db: search range (wide and fixed: no knowledge of the system's SNR range).
    Returns:
        snr_db: [...] float32; NaN where no demo carries information (one user).
    """
    _check_demos(h, lam_p)
    G = gram(h.to(torch.complex128))
    lam_p = lam_p.to(torch.float64)
    return fit_demos_db(lambda p: balance_residual(G, lam_p, p), h.shape[:-2], lo_db, hi_db).float()
