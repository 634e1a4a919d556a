"""Precoding-solver benchmark: batched Gram-space WMMSE vs a plain per-sample antenna-space reference, and the
throughput of MRT / ZF / RZF / max-min at the same size (i.i.d. Rayleigh, 10 dB).

``run(quick) -> list[dict]``; each row has ``name, value, unit, target, met`` plus details. The reference kept here
is the textbook implementation (Shi et al. 2011): a Python loop over samples, NumPy, ``ant x ant`` eigendecomposition
and the same RZF init, bisection and power scaling, so the two compute the same iterates.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from icwm.wireless import maxmin, precoding

FULL = {"batch": 1024, "users": 8, "ant": 128, "iters": 20, "ref_samples": 32, "repeats": 3}
QUICK = {"batch": 64, "users": 4, "ant": 16, "iters": 5, "ref_samples": 4, "repeats": 1}
SNR_DB = 10.0


def _bisect_np(lam: np.ndarray, num: np.ndarray, p: float, steps: int = 48) -> float:
    lam = np.maximum(lam, 0.0)
    lo, hi = 0.0, max(math.sqrt(num.sum() / p), np.finfo(lam.dtype).tiny)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if (num / (mid + lam) ** 2).sum() > p:
            lo = mid
        else:
            hi = mid
    return hi


def wmmse_reference(h: np.ndarray, p: float, iters: int) -> np.ndarray:
    """Per-sample antenna-space WMMSE with RZF init (reference for speed and values).

    Args:
        h: [user, ant] complex.  p: power budget.  iters: iterations.
    Returns:
        W: [ant, user] complex.
    """
    K = h.shape[0]
    hH = h.conj().T
    W = hH @ np.linalg.inv(h @ hH + (K / p) * np.eye(K, dtype=h.dtype))
    W *= math.sqrt(p / np.sum(np.abs(W) ** 2))
    off = 1.0 - np.eye(K)
    for _ in range(iters):
        E = h @ W
        pw = np.abs(E) ** 2
        sig, noise = np.diag(pw), (pw * off).sum(1) + 1.0
        e = np.diag(E)
        total = sig + noise
        u, omega = e / total, total / noise
        lam, U = np.linalg.eigh(hH @ ((omega * np.abs(u) ** 2)[:, None] * h))
        X = U.conj().T @ (hH * (omega * u)[None, :])
        mu = _bisect_np(lam, (np.abs(X) ** 2).sum(1), p)
        W = U @ (X / (mu + np.maximum(lam, 0.0))[:, None])
        W *= math.sqrt(p / np.sum(np.abs(W) ** 2))
    return W


def _sum_rate_np(h: np.ndarray, W: np.ndarray) -> float:
    pw = np.abs(h @ W) ** 2
    sig = np.diag(pw)
    return float(np.log2(1.0 + sig / (pw.sum(1) - sig + 1.0)).sum())


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs after one warm-up, and the last output."""
    out = fn()
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _channels(size: dict, device: torch.device) -> torch.Tensor:
    rng = torch.Generator().manual_seed(0)
    shape = (size["batch"], size["users"], size["ant"])
    h = torch.complex(torch.randn(shape, generator=rng), torch.randn(shape, generator=rng)) / math.sqrt(2.0)
    return h.to(device)


def _wmmse_rows(h: torch.Tensor, p: float, size: dict, device: torch.device) -> list[dict]:
    tag = f"K={size['users']} Nt={size['ant']} iters={size['iters']} batch={size['batch']} {SNR_DB:g} dB"
    t_gram, W = _timed(lambda: precoding.wmmse(h, p, iters=size["iters"]), device, size["repeats"])
    n_ref = size["ref_samples"]
    h_np = h[:n_ref].cpu().numpy().astype(np.complex128)  # textbook NumPy: double precision
    t0 = time.perf_counter()
    W_ref = [wmmse_reference(h_np[i], p, size["iters"]) for i in range(n_ref)]
    t_ref = time.perf_counter() - t0
    rate = precoding.sum_rate(h[:n_ref], W[:n_ref]).double().cpu().numpy()
    rate_ref = np.array([_sum_rate_np(h_np[i], W_ref[i]) for i in range(n_ref)])
    rel = float(np.max(np.abs(rate - rate_ref) / rate_ref))
    thr, thr_ref = h.shape[0] / t_gram, n_ref / t_ref
    speedup = thr / thr_ref
    return [
        {"name": "wmmse_gram_batched_speedup", "value": speedup, "unit": "x",
         "target": ">= 100x" + (" (applies to the full size; quick run)" if size is QUICK else ""),
         "met": speedup >= 100,
         "throughput": thr, "reference_throughput": thr_ref, "throughput_unit": "samples/s", "device": str(device),
         "setup": tag, "reference": f"per-sample NumPy antenna-space loop on {n_ref} samples, scaled",
         "mean_sum_rate": float(precoding.sum_rate(h, W).mean())},
        {"name": "wmmse_gram_vs_reference_sum_rate", "value": rel, "unit": "max relative difference",
         "target": "<= 1e-4", "met": rel <= 1e-4, "setup": tag, "subset_mean_sum_rate": float(rate.mean())},
    ]


def _throughput_rows(h: torch.Tensor, p: float, size: dict, device: torch.device) -> list[dict]:
    solvers = {"mrt": lambda: precoding.mrt(h, p), "zf": lambda: precoding.zf(h, p),
               "rzf": lambda: precoding.rzf(h, p), "maxmin": lambda: maxmin.maxmin_sinr(h, p).W}
    rows = []
    for name, fn in solvers.items():
        t, W = _timed(fn, device, size["repeats"])
        err = float(((precoding.power_of(W) - p).abs() / p).max())
        rows.append({"name": f"throughput_{name}", "value": h.shape[0] / t, "unit": "samples/s",
                     "target": "power = p within 1e-4 (throughput informational)", "met": err <= 1e-4,
                     "mean_sum_rate": float(precoding.sum_rate(h, W).mean()),
                     "mean_min_sinr_db": float(precoding.min_sinr_db(h, W).mean()), "device": str(device),
                     "setup": f"K={size['users']} Nt={size['ant']} batch={size['batch']} {SNR_DB:g} dB"})
    return rows


def run(quick: bool = False) -> list[dict]:
    """Run the solver benchmark.

    Args:
        quick: small sizes for a smoke test (K=4, Nt=16, batch 64, 5 iterations).
    Returns:
        rows: list of dicts with ``name, value, unit, target, met`` and details.
    """
    size = QUICK if quick else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    h = _channels(size, device)
    p = 10.0 ** (SNR_DB / 10.0)
    return _wmmse_rows(h, p, size, device) + _throughput_rows(h, p, size, device)
