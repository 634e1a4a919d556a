"""OFDM channel estimation from comb pilots: LS + linear interpolation, and frequency-domain LMMSE.

Observation model at the pilot subcarriers (unit pilots, LS already applied)::

    h_ls[..., t, p, a] = h[..., t, pilot_idx[p], a] + n,   n ~ CN(0, noise_var)

Pilots are a comb (the data engine uses every 4th subcarrier, :func:`comb_pilots`); estimation runs per time
index and antenna along frequency.
"""
from __future__ import annotations

import torch

from icwm.config import check


def comb_pilots(n_sc: int, spacing: int = 4, offset: int = 0) -> torch.Tensor:
    """Comb pilot subcarriers ``offset, offset + spacing, ...`` below ``n_sc``: [pilot_sc] int64."""
    check(spacing >= 1 and 0 <= offset < n_sc, "spacing/offset", f"spacing >= 1 and 0 <= offset < {n_sc}",
          (spacing, offset))
    return torch.arange(offset, n_sc, spacing)


def _check_pilots(pilot_idx: torch.Tensor, n_sc: int) -> None:
    ok = pilot_idx.dim() == 1 and pilot_idx.numel() >= 1
    ok = ok and bool((pilot_idx[1:] > pilot_idx[:-1]).all()) and 0 <= int(pilot_idx[0]) and int(pilot_idx[-1]) < n_sc
    check(ok, "pilot_idx", f"strictly increasing subcarrier indices in [0, {n_sc})", pilot_idx.tolist())


def interp_matrix(pilot_idx: torch.Tensor, n_sc: int, edge: str = "linear") -> torch.Tensor:
    """Linear interpolation weights from pilots to all subcarriers: [sc, pilot_sc] float32.

    Inside the pilot span each subcarrier is the linear interpolation of its two neighbouring pilots. Outside
    it (band edges), ``edge="linear"`` extends the first/last pilot segment (linear extrapolation, exact for a
    channel linear in frequency); ``edge="flat"`` holds the nearest pilot value. A single pilot gives a
    constant everywhere.

    Args:
        pilot_idx: [pilot_sc] int64, strictly increasing; n_sc: number of subcarriers; edge: "linear" | "flat".
    """
    _check_pilots(pilot_idx, n_sc)
    check(edge in ("linear", "flat"), "edge", "'linear' or 'flat'", edge)
    n_p = pilot_idx.numel()
    w = torch.zeros(n_sc, n_p)
    if n_p == 1:
        return w + 1.0
    p = pilot_idx.float()
    s = torch.arange(n_sc, dtype=torch.float32)
    seg = (torch.searchsorted(p, s, right=True) - 1).clamp(0, n_p - 2)        # left pilot of each segment
    t = (s - p[seg]) / (p[seg + 1] - p[seg])
    if edge == "flat":
        t = t.clamp(0.0, 1.0)
    rows = torch.arange(n_sc)
    w[rows, seg] = 1.0 - t
    w[rows, seg + 1] += t
    return w


def ls_interp(h_ls: torch.Tensor, pilot_idx: torch.Tensor, n_sc: int, edge: str = "linear") -> torch.Tensor:
    """LS estimates at the pilots linearly interpolated over frequency (see :func:`interp_matrix`).

    Args:
        h_ls: [..., time, pilot_sc, ant] complex LS estimates; pilot_idx: [pilot_sc] int64; n_sc: subcarriers.

    Returns:
        [..., time, sc, ant] complex, dtype/device of ``h_ls``.
    """
    check(h_ls.dim() >= 2 and h_ls.shape[-2] == pilot_idx.numel(), "h_ls",
          f"[..., pilot_sc={pilot_idx.numel()}, ant]", tuple(h_ls.shape))
    w = interp_matrix(pilot_idx.cpu(), n_sc, edge).to(device=h_ls.device, dtype=h_ls.dtype)
    return w @ h_ls                                                          # [sc, p] @ [..., p, ant]


def ridge_solve(gram: torch.Tensor, cross: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Ridge regression coefficients ``D = cross (gram + lam I)^-1`` from the normal-equation statistics
    (``gram = sum x x^H``, ``cross = sum y x^H``): gram [..., F, F], cross [..., O, F], lam [...] -> [..., O, F]."""
    eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
    return torch.linalg.solve(gram + lam[..., None, None] * eye, cross.mH).mH


def freq_covariance(h: torch.Tensor, loading: float = 0.0) -> torch.Tensor:
    """Sample frequency covariance ``R[i, j] = mean_n h[n, i] conj(h[n, j])`` (zero-mean channel).

    Args:
        h: [..., n, sc] complex sample channels (e.g. all times/antennas/drops of a configuration).
        loading: diagonal loading added as ``loading * trace(R) / sc * I`` (regularises few samples).

    Returns:
        [..., sc, sc] complex, Hermitian positive semi-definite.
    """
    check(h.dim() >= 2 and h.shape[-2] >= 1, "h", "a tensor [..., n, sc] with n >= 1", tuple(h.shape))
    r = h.transpose(-1, -2) @ h.conj() / h.shape[-2]                         # [..., sc, sc]
    if loading > 0:
        n_sc = r.shape[-1]
        tr = torch.diagonal(r, dim1=-2, dim2=-1).real.sum(-1) / n_sc
        r = r + loading * tr[..., None, None] * torch.eye(n_sc, dtype=r.dtype, device=r.device)
    return r


def lmmse_matrix(pilot_idx: torch.Tensor, cov_freq: torch.Tensor, noise_var: torch.Tensor | float
                 ) -> torch.Tensor:
    """LMMSE interpolator ``W = R[:, P] (R[P, P] + noise_var I)^-1``: [..., sc, pilot_sc].

    Args:
        pilot_idx: [pilot_sc] int64; cov_freq: [..., sc, sc] complex; noise_var: [...] or float (>= 0).
    """
    pil = pilot_idx.to(cov_freq.device)
    r_hp = cov_freq[..., :, pil]                                              # [..., sc, p]
    r_pp = r_hp[..., pil, :]                                                  # [..., p, p]
    nv = torch.as_tensor(noise_var, dtype=cov_freq.real.dtype, device=cov_freq.device)[..., None, None]
    a = r_pp + nv * torch.eye(pil.numel(), dtype=cov_freq.dtype, device=cov_freq.device)
    # W = R_hp A^-1  <=>  W^H = A^-1 R_ph (A Hermitian)
    rhs = r_hp.mH.expand(a.shape[:-2] + r_hp.mH.shape[-2:])                  # batched like a (see precoding)
    return torch.linalg.solve(a, rhs).mH


def lmmse_estimate(h_ls: torch.Tensor, pilot_idx: torch.Tensor, n_sc: int, cov_freq: torch.Tensor,
                   noise_var: torch.Tensor | float) -> torch.Tensor:
    """Frequency-domain LMMSE estimate per time index and antenna: ``h_hat = R_hp (R_pp + noise_var I)^-1 h_ls``.

    Args:
        h_ls: [..., time, pilot_sc, ant] complex LS estimates at the pilots.
        pilot_idx: [pilot_sc] int64.
        n_sc: number of subcarriers (must match ``cov_freq``).
        cov_freq: [sc, sc] or [..., sc, sc] complex frequency covariance; its leading dims broadcast against
            ``h_ls.shape[:-2]`` (i.e. ``[..., time]``).
        noise_var: float or tensor broadcasting against ``h_ls.shape[:-2]``.

    Returns:
        [..., time, sc, ant] complex.
    """
    check(cov_freq.shape[-2:] == (n_sc, n_sc), "cov_freq", f"[..., {n_sc}, {n_sc}]", tuple(cov_freq.shape))
    check(h_ls.dim() >= 2 and h_ls.shape[-2] == pilot_idx.numel(), "h_ls",
          f"[..., pilot_sc={pilot_idx.numel()}, ant]", tuple(h_ls.shape))
    _check_pilots(pilot_idx, n_sc)
    w = lmmse_matrix(pilot_idx, cov_freq.to(h_ls.dtype), noise_var)          # [..., sc, p]
    return w @ h_ls                                                          # [..., time, sc, ant]


def lmmse_mse(pilot_idx: torch.Tensor, cov_freq: torch.Tensor, noise_var: torch.Tensor | float) -> torch.Tensor:
    """Closed-form LMMSE error per subcarrier ``diag(R - W R_ph)`` when ``cov_freq`` is the true covariance.

    Returns:
        [..., sc] float (real part of the diagonal).
    """
    w = lmmse_matrix(pilot_idx, cov_freq, noise_var)
    r_ph = cov_freq[..., pilot_idx.to(cov_freq.device), :]                   # [..., p, sc]
    return torch.diagonal(cov_freq - w @ r_ph, dim1=-2, dim2=-1).real


def exp_pdp_covariance(n_sc: int, spacing_hz: float, rms_delay_s: float, device: torch.device | str | None = None
                       ) -> torch.Tensor:
    """Frequency covariance of an exponential power-delay profile (unit power, continuous):
    ``R[i, j] = 1 / (1 + j 2 pi (i - j) spacing tau_rms)``. Handy for tests and as a prior. [sc, sc] complex64."""
    d = torch.arange(n_sc, device=device, dtype=torch.float32)
    df = (d[:, None] - d[None, :]) * spacing_hz * rms_delay_s
    return 1.0 / torch.complex(torch.ones_like(df), 2 * torch.pi * df)


def freq_covariance_pooled(h: torch.Tensor) -> torch.Tensor:
    """Frequency covariance pooled over snapshots and antennas: ``R = mean_{n, a} h[n, :, a] h[n, :, a]^H``.

    Args:
        h: [..., n, sc, ant] complex (n snapshots of one link, every antenna a sample of the same covariance).

    Returns:
        [..., sc, sc] complex.
    """
    check(h.dim() >= 3, "h", "a tensor [..., n, sc, ant]", tuple(h.shape))
    return freq_covariance(h.movedim(-1, -2).flatten(-3, -2))               # [..., n * ant, sc] -> [..., sc, sc]


def noise_var_at_pilots(h_ls: torch.Tensor, h_pilots: torch.Tensor) -> torch.Tensor:
    """Noise variance estimate ``mean |h_ls - h|^2`` over the trailing (time, pilot_sc, ant) dims.

    Args:
        h_ls: [..., time, pilot_sc, ant] noisy LS estimates; h_pilots: same shape, the true channel at the pilots.

    Returns:
        [...] float.
    """
    check(h_ls.shape == h_pilots.shape and h_ls.dim() >= 3, "h_ls/h_pilots", "equal shapes [..., time, pilot_sc, ant]",
          (tuple(h_ls.shape), tuple(h_pilots.shape)))
    return (h_ls - h_pilots).abs().pow(2).mean((-3, -2, -1))
