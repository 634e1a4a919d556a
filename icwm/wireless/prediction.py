"""Channel prediction in time: repeat-last, autoregressive (LS / Yule-Walker / Wiener) and vector Prony.

All predictors map a (possibly noisy) history ``h_hist: [..., t_in, sc, ant]`` to ``h_fut: [..., t_out, sc, ant]``
(complex). The temporal statistics are assumed common to all subcarriers and antennas of a sample (WSSUS), so
the AR coefficients / Prony poles are shared across ``sc x ant`` and fitted per sample (per leading index).
"""
from __future__ import annotations

import math

import torch

from icwm.config import check
from icwm.wireless.estimation import ridge_solve
from icwm.wireless.linalg import eigh


def _check_hist(h_hist: torch.Tensor, t_out: int, min_t: int = 1) -> None:
    check(h_hist.dim() >= 3 and h_hist.is_complex(), "h_hist", "a complex tensor [..., t_in, sc, ant]",
          tuple(h_hist.shape))
    check(h_hist.shape[-3] >= min_t, "h_hist", f"at least {min_t} past snapshots", h_hist.shape[-3])
    check(t_out >= 1, "t_out", "an integer >= 1", t_out)


def _series(h_hist: torch.Tensor) -> torch.Tensor:
    """[..., t, sc, ant] -> [..., sc*ant, t] (one time series per subcarrier/antenna)."""
    return h_hist.flatten(-2).transpose(-1, -2)


def _unseries(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[..., sc*ant, t] -> [..., t, sc, ant] with the sc/ant sizes of ``like``."""
    return x.transpose(-1, -2).reshape(x.shape[:-2] + (x.shape[-1],) + like.shape[-2:])


def repeat_last(h_hist: torch.Tensor, t_out: int) -> torch.Tensor:
    """Hold the last observed snapshot: [..., t_in, sc, ant] -> [..., t_out, sc, ant]."""
    _check_hist(h_hist, t_out)
    return h_hist[..., -1:, :, :].expand(h_hist.shape[:-3] + (t_out,) + h_hist.shape[-2:]).clone()


def _lagged(x: torch.Tensor, order: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression pairs from series x [..., n, t]: regressors [..., n*m, order] (newest first), targets [..., n*m]."""
    t = x.shape[-1]
    m = t - order - horizon + 1
    cols = [x[..., order - 1 - i: order - 1 - i + m] for i in range(order)]   # lag i: x[s - i]
    reg = torch.stack(cols, -1)                                               # [..., n, m, order]
    tgt = x[..., order - 1 + horizon: order - 1 + horizon + m]                # [..., n, m]
    return reg.flatten(-3, -2), tgt.flatten(-2)


def _solve_ls(reg: torch.Tensor, tgt: torch.Tensor, ridge: float) -> torch.Tensor:
    """Least squares ``argmin_a ||reg a - tgt||^2 + ridge * tr(R)/p ||a||^2``: [..., order] complex."""
    r = reg.mH @ reg                                                           # [..., p, p]
    p = r.shape[-1]
    load = ridge * torch.diagonal(r, dim1=-2, dim2=-1).real.mean(-1).clamp_min(1e-30)
    r = r + load[..., None, None] * torch.eye(p, dtype=r.dtype, device=r.device)
    return torch.linalg.solve(r, (reg.mH @ tgt[..., None]))[..., 0]


def ar_fit(h_hist: torch.Tensor, order: int = 4, horizon: int = 1, ridge: float = 1e-3) -> torch.Tensor:
    """Fit a ``horizon``-step linear predictor on the history itself (covariance-method least squares).

    ``h[t + horizon - 1] ~ sum_i a[i] h[t - 1 - i]``, one coefficient vector shared by all subcarriers and
    antennas of a sample. With noisy history this converges to the Wiener predictor for noisy observations
    (the white noise of the target does not bias it). Needs ``t_in >= order + horizon``.

    Args:
        h_hist: [..., t_in, sc, ant] complex; order: p; horizon: steps ahead (1 = next snapshot);
        ridge: relative diagonal loading of the normal equations.

    Returns:
        a: [..., order] complex (``a[0]`` multiplies the newest sample).
    """
    check(order >= 1, "order", "an integer >= 1", order)
    _check_hist(h_hist, 1, order + horizon)
    reg, tgt = _lagged(_series(h_hist), order, horizon)
    return _solve_ls(reg, tgt, ridge)


def wiener_coeffs(acf: torch.Tensor, order: int, horizon: int = 1, noise_var: torch.Tensor | float = 0.0
                  ) -> torch.Tensor:
    """Wiener predictor from a known autocorrelation (Yule-Walker with noisy observations).

    ``acf[..., l] = E[h(t + l) h(t)^*]``, l = 0 .. order + horizon - 1. Observations ``y = h + n``,
    ``n ~ CN(0, noise_var)``: ``a = (T + noise_var I)^-1 r`` with ``T[i, j] = acf[i - j]`` (Hermitian Toeplitz) and
    ``r[i] = acf[horizon + i]``.

    Returns:
        a: [..., order] complex (``a[0]`` multiplies the newest sample).
    """
    check(acf.shape[-1] >= order + horizon, "acf", f"at least order + horizon = {order + horizon} lags",
          acf.shape[-1])
    acf = acf.to(torch.complex64) if not acf.is_complex() else acf
    i = torch.arange(order, device=acf.device)
    lag = i[:, None] - i[None, :]                                              # [p, p]
    t = torch.where(lag >= 0, acf[..., lag.clamp_min(0)], acf[..., (-lag).clamp_min(0)].conj())
    nv = torch.as_tensor(noise_var, dtype=acf.real.dtype, device=acf.device)[..., None, None]
    t = t + nv * torch.eye(order, dtype=acf.dtype, device=acf.device)
    return torch.linalg.solve(t, acf[..., horizon + i][..., None])[..., 0]


def _apply(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """One prediction from series x [..., n, t] with coefficients a [..., order]: [..., n]."""
    p = a.shape[-1]
    recent = x[..., -p:].flip(-1)                                              # newest first
    return (recent * a[..., None, :]).sum(-1)


def ar_predict(h_hist: torch.Tensor, t_out: int, order: int | None = None, *, acf: torch.Tensor | None = None,
               noise_var: torch.Tensor | float = 0.0, multi_step: str = "iterate", ridge: float = 1e-3
               ) -> torch.Tensor:
    """Autoregressive / Wiener channel prediction.

    Coefficients come from the history itself (:func:`ar_fit`, least squares over all subcarriers/antennas of
    a sample) or, when ``acf`` is given, from the known autocorrelation (:func:`wiener_coeffs` with
    ``noise_var``). Multi-step: ``"iterate"`` feeds one-step predictions back; ``"direct"`` fits a separate
    ``h``-step predictor per horizon (the Wiener multi-step predictor).

    Args:
        h_hist: [..., t_in, sc, ant] complex; t_out: horizon; order: AR order p (default min(8, t_in // 2);
            history fits need t_in >= p + 1, or p + t_out for "direct"); acf: [..., L] autocorrelation
            (lag 0..); noise_var: observation noise (acf mode).

    Returns:
        [..., t_out, sc, ant] complex.
    """
    order = order or min(8, h_hist.shape[-3] // 2)
    _check_hist(h_hist, t_out, order)
    check(multi_step in ("iterate", "direct"), "multi_step", "'iterate' or 'direct'", multi_step)
    x = _series(h_hist)                                                        # [..., n, t]

    def coeffs(horizon: int) -> torch.Tensor:
        if acf is not None:
            return wiener_coeffs(acf, order, horizon, noise_var).to(x.dtype)
        return ar_fit(h_hist, order, horizon, ridge)

    if multi_step == "direct":
        out = [_apply(x, coeffs(s)) for s in range(1, t_out + 1)]
    else:
        a, out = coeffs(1), []
        for _ in range(t_out):
            out.append(_apply(x, a))
            x = torch.cat([x, out[-1][..., None]], -1)
    return _unseries(torch.stack(out, -1), h_hist)


def prony_poles(h_hist: torch.Tensor, n_exp: int, pencil: int | None = None) -> torch.Tensor:
    """Shared complex exponentials (poles) of all series of a sample by a multi-snapshot matrix pencil / ESPRIT.

    Windows of length ``pencil + 1`` of every subcarrier/antenna series are the columns of a data matrix D;
    the ``n_exp`` dominant left singular vectors U of D (eigenvectors of D D^H) satisfy U[1:] = U[:-1] Phi,
    and the poles are the eigenvalues of ``Phi = pinv(U[:-1]) U[1:]``.

    Args:
        h_hist: [..., t_in, sc, ant] complex; n_exp: number of exponentials; pencil: L (default t_in // 2).

    Returns:
        z: [..., n_exp] complex poles.
    """
    t_in = h_hist.shape[-3]
    pencil = pencil or t_in // 2
    check(n_exp <= pencil <= t_in - 1, "pencil", f"n_exp={n_exp} <= pencil <= t_in - 1 = {t_in - 1}", pencil)
    x = _series(h_hist)                                                        # [..., n, t]
    win = x.unfold(-1, pencil + 1, 1)                                         # [..., n, t - L, L + 1]
    d = win.flatten(-3, -2).transpose(-1, -2)                                  # [..., L + 1, cols]
    cov = d @ d.mH                                                             # [..., L + 1, L + 1]
    _, vec = eigh(cov)
    u = vec[..., -n_exp:]                                                      # dominant subspace
    phi = torch.linalg.pinv(u[..., :-1, :]) @ u[..., 1:, :]                    # [..., n_exp, n_exp]
    return torch.linalg.eigvals(phi)


def prony_predict(h_hist: torch.Tensor, t_out: int, n_exp: int = 4, pencil: int | None = None,
                  max_radius: float = 1.0) -> torch.Tensor:
    """Vector Prony prediction: ``h[t] = sum_k c_k z_k^t`` with poles shared across subcarriers/antennas.

    Poles from :func:`prony_poles`; pole radii are capped at ``max_radius`` (no growing modes); the complex
    amplitudes ``c`` of every series are least-squares fitted on the history (Vandermonde system), then the
    model is evaluated at ``t_in, ..., t_in + t_out - 1``. Noise-free data with at most ``n_exp`` distinct
    exponentials are extrapolated exactly.

    Args:
        h_hist: [..., t_in, sc, ant] complex; t_out: horizon; n_exp: model order; pencil: see prony_poles.

    Returns:
        [..., t_out, sc, ant] complex.
    """
    _check_hist(h_hist, t_out, n_exp + 1)
    check(n_exp >= 1, "n_exp", "an integer >= 1", n_exp)
    z = prony_poles(h_hist, n_exp, pencil)                                     # [..., k]
    r = z.abs()
    z = torch.where(r > max_radius, z / r * max_radius, z).to(h_hist.dtype)
    t_in = h_hist.shape[-3]
    t = torch.arange(t_in + t_out, device=h_hist.device, dtype=h_hist.real.dtype)
    v = z[..., None, :] ** t[:, None].to(h_hist.dtype)                        # [..., t_in + t_out, k]
    driver = "gelsd" if v.device.type == "cpu" else None    # the default CPU driver is not run-to-run deterministic
    coef = torch.linalg.lstsq(v[..., :t_in, :], _series(h_hist).transpose(-1, -2), driver=driver).solution  # [..., k, n]
    fut = v[..., t_in:, :] @ coef                                              # [..., t_out, n]
    return _unseries(fut.transpose(-1, -2), h_hist)


def jakes_acf(n_lags: int, doppler_norm: float) -> torch.Tensor:
    """Clarke/Jakes autocorrelation ``J0(2 pi f_d T l)``, l = 0..n_lags-1: [n_lags] float32 (unit power)."""
    lags = torch.arange(n_lags, dtype=torch.float64)
    return torch.special.bessel_j0(2 * math.pi * doppler_norm * lags).float()


def jakes_series(shape: tuple[int, ...], n_time: int, doppler_norm: float, rng: torch.Generator,
                 n_paths: int = 64) -> torch.Tensor:
    """Rich-scattering Rayleigh fading by sum of sinusoids (random arrival angles and phases), unit power.

    ``h(t) = n_paths^-1/2 sum_m exp(j (2 pi f_d T cos(alpha_m) t + phi_m))``; independent per entry of ``shape``.
    Its autocorrelation tends to :func:`jakes_acf` for many paths.

    Args:
        shape: leading dims (e.g. ``(batch, sc, ant)``); n_time: samples; doppler_norm: f_d * T (max Doppler
            times sampling interval); rng: generator.

    Returns:
        [*shape, time] complex64.
    """
    alpha = 2 * math.pi * torch.rand(tuple(shape) + (n_paths, 1), generator=rng, dtype=torch.float64)
    phi = 2 * math.pi * torch.rand(tuple(shape) + (n_paths, 1), generator=rng, dtype=torch.float64)
    t = torch.arange(n_time, dtype=torch.float64)
    phase = 2 * math.pi * doppler_norm * torch.cos(alpha) * t + phi               # [*shape, paths, time]
    return (torch.polar(torch.ones_like(phase), phase).sum(-2) / math.sqrt(n_paths)).to(torch.complex64)


def doppler_norm(speed_kmh: float, carrier_hz: float, interval_s: float) -> float:
    """Normalised maximum Doppler ``f_d T = v f_c / c * T``."""
    return speed_kmh / 3.6 * carrier_hz / 299_792_458.0 * interval_s


# ---- window predictors: one linear map from a history window to a future window, per DFT beam ------------------
# The history [t_in] of every subcarrier of a beam (DFT over the antennas) is mapped to its future [t_out] by one
# matrix W [t_out, t_in] per beam: the Wiener predictor when W comes from the link's window covariance
# (:func:`window_covariance`), a least-squares fit when it comes from example windows (:func:`window_stats`,
# :func:`window_fit`). ``per_beam=False`` pools the statistics over the beams (one W for the whole link).


def to_beams(h: torch.Tensor) -> torch.Tensor:
    """[..., sc, ant] -> [..., sc, beam]: unitary DFT over the antenna index."""
    return torch.fft.fft(h, dim=-1, norm="ortho")


def from_beams(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_beams`."""
    return torch.fft.ifft(x, dim=-1, norm="ortho")


def _pool(stat: torch.Tensor, per_beam: bool) -> torch.Tensor:
    """[..., beam, a, b] -> itself, or its mean over the beams kept as a size-1 beam dim."""
    return stat if per_beam else stat.mean(-3, keepdim=True)


def window_covariance(h: torch.Tensor, length: int, per_beam: bool = True) -> torch.Tensor:
    """Sample covariance of all sliding windows of ``length`` snapshots of a series, per beam:
    ``C[i, j] = mean_{w, sc} x[w + i] conj(x[w + j])`` (positive semi-definite by construction).

    Computed from the lag products ``x[t + l] conj(x[t])`` and their running sums (no window tensor).

    Args:
        h: [..., time, sc, ant] complex, time >= length.

    Returns:
        [..., beam, length, length] complex (beam = 1 when ``per_beam`` is False: pooled over the beams).
    """
    check(h.dim() >= 3 and h.shape[-3] >= length >= 1, "h", f"a series [..., time >= {length}, sc, ant]",
          tuple(h.shape))
    x = to_beams(h)
    n, n_sc = h.shape[-3], h.shape[-2]
    n_win = n - length + 1
    c = x.new_zeros(x.shape[:-3] + (x.shape[-1], length, length))
    for lag in range(length):
        q = (x[..., lag:, :, :] * x[..., :n - lag, :, :].conj()).sum(-2)                 # [..., n - lag, beam]
        run = torch.cat((torch.zeros_like(q[..., :1, :]), q.cumsum(-2)), -2)
        j = torch.arange(length - lag, device=h.device)
        vals = (run[..., j + n_win, :] - run[..., j, :]).transpose(-1, -2) / (n_win * n_sc)   # [..., beam, L - lag]
        c[..., j + lag, j] = vals
        c[..., j, j + lag] = vals.conj()
    return _pool(c, per_beam)


def window_fit(gram: torch.Tensor, cross: torch.Tensor, prior: torch.Tensor, shrink: float | torch.Tensor
               ) -> torch.Tensor:
    """Window predictors fitted to example windows and shrunk towards a prior predictor.

    ``W = argmin ||Y - W X||^2 + lam ||W - W_prior||^2`` per beam, ``lam = shrink * mean diag(gram)``: the prior
    weighs as much as ``shrink`` times the data (0: plain least squares).

    Args:
        gram: [..., beam, t_in, t_in]; cross: [..., beam, t_out, t_in] (:func:`window_stats`);
        prior: [..., beam or 1, t_out, t_in]; shrink: float or [...] tensor.

    Returns:
        [..., beam, t_out, t_in] complex.
    """
    load = torch.diagonal(gram, dim1=-2, dim2=-1).real.mean(-1).clamp_min(1e-30)          # [..., beam]
    lam = torch.as_tensor(shrink, dtype=load.dtype, device=load.device)[..., None] * load + 1e-6 * load
    return ridge_solve(gram, cross + lam[..., None, None] * prior.to(cross.dtype), lam)


def ar_window_map(h_hist: torch.Tensor, t_out: int, order: int | None = None, ridge: float = 1e-3) -> torch.Tensor:
    """The iterated AR predictor of :func:`ar_predict` (fitted on the history itself) as a linear window map.

    Args:
        h_hist: [..., t_in, sc, ant] complex.

    Returns:
        W: [..., t_out, t_in] complex with ``ar_predict(h_hist, t_out)[..., o, s, a] = sum_i W[o, i] h_hist[i, s, a]``.
    """
    t_in = h_hist.shape[-3]
    order = order or min(8, t_in // 2)
    a = ar_fit(h_hist, order, 1, ridge)                                                   # [..., order]
    x = torch.eye(t_in, dtype=a.dtype, device=a.device).expand(a.shape[:-1] + (t_in, t_in))   # [..., basis, time]
    out = []
    for _ in range(t_out):
        out.append(_apply(x, a))                                                          # [..., basis]
        x = torch.cat([x, out[-1][..., None]], -1)
    return torch.stack(out, -2)                                                           # [..., t_out, t_in]


def window_stats(hist: torch.Tensor, fut: torch.Tensor, per_beam: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares normal equations of example windows, per beam, summed over windows and subcarriers.

    Args:
        hist: [..., n, t_in, sc, ant] complex; fut: [..., n, t_out, sc, ant] complex (n example windows).

    Returns:
        gram [..., beam, t_in, t_in] = sum x x^H and cross [..., beam, t_out, t_in] = sum y x^H (beam = 1 when
        pooled).
    """
    check(hist.shape[:-3] == fut.shape[:-3] and hist.shape[-2:] == fut.shape[-2:] and hist.dim() >= 4,
          "hist/fut", "[..., n, t_in, sc, ant] and [..., n, t_out, sc, ant]", (tuple(hist.shape), tuple(fut.shape)))
    x, y = to_beams(hist), to_beams(fut)
    gram = torch.einsum("...nisb,...njsb->...bij", x, x.conj())
    cross = torch.einsum("...nosb,...njsb->...boj", y, x.conj())
    return _pool(gram, per_beam), _pool(cross, per_beam)


def window_predict(coef: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
    """Apply per-beam window predictors.

    Args:
        coef: [..., beam, t_out, t_in] complex (beam = 1: one map for every beam); hist: [..., t_in, sc, ant].

    Returns:
        [..., t_out, sc, ant] complex.
    """
    x = to_beams(hist)
    coef = coef.to(x.dtype).expand(coef.shape[:-3] + (x.shape[-1],) + coef.shape[-2:])
    return from_beams(torch.einsum("...boi,...isb->...osb", coef, x))
