"""DFT beam codebooks, codebook sweeps, and sub-6 GHz aided mmWave beam selection (classical baseline).

ULA convention: element n of the array response to a plane wave from angle theta is
``a_n(u) = exp(j 2 pi n u)`` with the spatial frequency ``u = d sin(theta)`` (``d``: spacing in wavelengths).
A user with channel row ``h [ant]`` receives ``h @ w`` from beam ``w``; a codebook beam steered to ``u_b`` is
``w_b = conj(a(u_b)) / sqrt(N)``, so ``|a(u)^T w_b|^2`` peaks (= N) at ``u = u_b``.

Beam ``b`` of an ``n_beams`` codebook points at ``u_b = -1/2 + b / n_beams`` (beams ordered by angle; for
``d = 1/2``: ``sin(theta_b) = -1 + 2 b / n_beams``). With ``n_beams == n_ant`` the beams are the (shifted) DFT
basis and orthonormal; ``n_beams > n_ant`` oversamples the angle grid.

Because ``sin(theta)`` of a path is the same in both bands (same drop, TR 38.901 7.6.5), an angle estimated at
sub-6 GHz maps to a mmWave beam through ``u_mmw = u_sub6 * d_mmw / d_sub6``.
"""
from __future__ import annotations

import math

import torch

from icwm.config import check


def beam_spatial_freq(n_beams: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Steering spatial frequencies of the codebook beams ``u_b = -1/2 + b / n_beams``: [n_beams] float32."""
    check(n_beams >= 1, "n_beams", "an integer >= 1", n_beams)
    return -0.5 + torch.arange(n_beams, device=device, dtype=torch.float32) / n_beams


def steering_vector(n_ant: int, u: torch.Tensor | float) -> torch.Tensor:
    """ULA response ``a_n(u) = exp(j 2 pi n u)``: u [...] -> [..., ant] complex64 (not normalised)."""
    u = torch.as_tensor(u, dtype=torch.float32)
    n = torch.arange(n_ant, device=u.device, dtype=torch.float64)
    phase = 2 * math.pi * u.double()[..., None] * n
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


def dft_codebook(n_ant: int, n_beams: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Unit-norm (oversampled) DFT codebook ``w_b = conj(a(u_b)) / sqrt(n_ant)``.

    Args:
        n_ant: ULA elements; n_beams: beams (default ``n_ant``), >= n_ant.

    Returns:
        [n_beams, ant] complex64; rows are the beams (orthonormal when ``n_beams == n_ant``).
    """
    n_beams = n_beams or n_ant
    check(n_ant >= 1, "n_ant", "an integer >= 1", n_ant)
    check(n_beams >= n_ant, "n_beams", f">= n_ant={n_ant}", n_beams)
    return steering_vector(n_ant, beam_spatial_freq(n_beams, device)).conj() / math.sqrt(n_ant)


def beam_gains(h: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Beamforming gain of every beam, averaged over subcarriers: ``mean_sc |h[sc] @ w_b|^2``.

    Args:
        h: [..., sc, ant] complex channel (rows: what the user sees from each BS antenna).
        codebook: [n_beams, ant] complex.

    Returns:
        [..., n_beams] float (real dtype of ``h``).
    """
    check(h.shape[-1] == codebook.shape[-1], "codebook", f"[n_beams, ant={h.shape[-1]}]", tuple(codebook.shape))
    return (h @ codebook.to(device=h.device, dtype=h.dtype).T).abs().pow(2).mean(-2)


def dft_beam_gains(h: torch.Tensor, n_beams: int) -> torch.Tensor:
    """:func:`beam_gains` of the ``dft_codebook(ant, n_beams)`` through FFTs (n_beams even).

    ``h @ w_b = sum_n h_n e^{-j 2 pi n (b - B/2) / B} / sqrt(N)``, so the mean over subcarriers of ``|h @ w_b|^2`` is
    the B-point DFT (shifted by half the beams) of the antenna-lag autocorrelation ``r_l = mean_sc sum_n h_{n+l}
    h_n^*``, |l| < N; ``r`` comes from one 2N-point FFT per subcarrier (no wrap-around), and lags beyond the B-point
    grid fold onto it (the DFT of the folded sequence is the same at the B frequencies). Args/Returns as
    :func:`beam_gains` (equal up to rounding, clamped at 0).
    """
    n_ant = h.shape[-1]
    check(n_beams >= n_ant and n_beams % 2 == 0, "n_beams", f"an even count >= n_ant={n_ant}", n_beams)
    s = torch.fft.fft(h, n=2 * n_ant, dim=-1)                                 # [..., sc, 2N]
    r = torch.fft.ifft(torch.view_as_real(s).square().sum(-1).mean(-2).to(s.dtype), dim=-1)   # [..., 2N] lags
    lag = torch.arange(2 * n_ant, device=h.device)
    fold = torch.where(lag < n_ant, lag, lag - 2 * n_ant) % n_beams           # lag 0..N-1, -N..-1 -> grid index
    r_b = r.new_zeros(r.shape[:-1] + (n_beams,)).index_add_(r.dim() - 1, fold, r)
    return torch.fft.fft(r_b, dim=-1).real.roll(n_beams // 2, dims=-1).clamp_min(0.0) / n_ant


def best_beam(h: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Exhaustive codebook sweep: index of the highest :func:`beam_gains`. [..., sc, ant] -> [...] int64."""
    return beam_gains(h, codebook).argmax(-1)


beam_sweep = best_beam   # the name docs/contracts.md uses for the exhaustive sweep


def angle_spectrum(h: torch.Tensor, u_grid: torch.Tensor) -> torch.Tensor:
    """Bartlett (beam-scan) angle spectrum ``P(u) = sum_sc |a(u)^H h[sc]|^2``: [..., sc, ant] -> [..., grid]."""
    a = steering_vector(h.shape[-1], u_grid.to(h.device)).to(h.dtype)       # [grid, ant]
    return (h @ a.conj().T).abs().pow(2).sum(-2)


def angle_spectrum_cov(h: torch.Tensor, u_grid: torch.Tensor) -> torch.Tensor:
    """:func:`angle_spectrum` from the spatial covariance ``R = sum_sc h[sc] h[sc]^H``: ``P(u) = a(u)^H R a(u)``
    (ant^2 per grid point instead of sc x ant; equal up to rounding). [..., sc, ant] -> [..., grid]."""
    a = steering_vector(h.shape[-1], u_grid.to(h.device)).to(h.dtype)       # [grid, ant]
    cov = h.transpose(-2, -1) @ h.conj()                                     # [..., ant, ant] = sum_sc h h^H
    return (a.conj().T * (cov @ a.T)).sum(-2).real                           # [..., grid]


def estimate_spatial_freq(h: torch.Tensor, spacing: float = 0.5, n_grid: int = 2048,
                          covariance: bool = False) -> torch.Tensor:
    """Dominant path's spatial frequency ``u = d sin(theta)`` of a ULA channel (angle-domain scan).

    Scans ``sin(theta)`` on a uniform grid of ``n_grid`` points in [-1, 1) (zero-padded-FFT resolution), then
    refines the peak by a parabola through the three grid values around it.

    Args:
        h: [..., sc, ant] complex; spacing: element spacing d in wavelengths;
        covariance: scan with :func:`angle_spectrum_cov` (faster when sc > ant).

    Returns:
        [...] float32 spatial frequency u in [-d, d).
    """
    check(spacing > 0, "spacing", "a positive spacing in wavelengths", spacing)
    step = 2.0 / n_grid
    s_grid = -1.0 + step * torch.arange(n_grid, device=h.device, dtype=torch.float32)
    p = (angle_spectrum_cov if covariance else angle_spectrum)(h, spacing * s_grid)   # [..., grid]
    i = p.argmax(-1)
    lo, mid, hi = (p.gather(-1, ((i + o) % n_grid)[..., None])[..., 0] for o in (-1, 0, 1))
    den = lo - 2 * mid + hi
    shift = torch.where(den < 0, 0.5 * (lo - hi) / den.clamp_max(-1e-30), torch.zeros_like(den))
    return spacing * (s_grid[i] + step * shift.clamp(-0.5, 0.5)).float()


def nearest_beam(u: torch.Tensor, n_beams: int) -> torch.Tensor:
    """Index of the DFT-codebook beam nearest to spatial frequency ``u`` (modulo 1): [...] -> [...] int64."""
    return torch.round((u + 0.5) * n_beams).long() % n_beams


def sub6_angle_map(h_sub6: torch.Tensor, codebook: int | torch.Tensor, spacing_sub6: float = 0.5,
                   spacing_mmw: float = 0.5, n_grid: int = 2048) -> torch.Tensor:
    """Sub-6 GHz aided mmWave beam selection: estimate the dominant angle at sub-6, pick the mmWave beam.

    Args:
        h_sub6: [..., sc6, ant6] complex sub-6 ULA channel.
        codebook: number of beams of the mmWave :func:`dft_codebook` (nearest beam in spatial frequency), or
            any mmWave codebook [n_beams, ant_mmw] (the beam with the highest gain towards the estimated angle).
        spacing_sub6, spacing_mmw: element spacings in wavelengths of each band's array.

    Returns:
        [...] int64 beam index.
    """
    sin_t = estimate_spatial_freq(h_sub6, spacing_sub6, n_grid) / spacing_sub6
    u_mmw = spacing_mmw * sin_t
    if isinstance(codebook, int):
        return nearest_beam(u_mmw, codebook)
    a = steering_vector(codebook.shape[-1], u_mmw)                           # [..., ant_mmw]
    return (a @ codebook.to(device=a.device, dtype=a.dtype).T).abs().argmax(-1)


def sub6_beam_scores(h_sub6: torch.Tensor, n_beams: int, spacing_sub6: float = 0.5, spacing_mmw: float = 0.5
                     ) -> torch.Tensor:
    """Soft version of :func:`sub6_angle_map`: the sub-6 angle spectrum read at every mmWave beam's angle.

    Beam ``b`` of the mmWave DFT codebook points at ``sin(theta_b) = u_b / spacing_mmw``; its score is
    ``log P_sub6(spacing_sub6 * sin(theta_b))`` (Bartlett spectrum, :func:`angle_spectrum`, normalised to max 0).
    Use as ``beam_logits`` (ranking for top-k accuracy); beams outside the visible region get ``-inf``.

    Returns:
        [..., n_beams] float32 log-scores.
    """
    sin_b = beam_spatial_freq(n_beams, h_sub6.device) / spacing_mmw
    p = angle_spectrum(h_sub6, spacing_sub6 * sin_b)                         # [..., n_beams]
    p = p / p.amax(-1, keepdim=True).clamp_min(1e-30)
    return torch.where(sin_b.abs() <= 1.0, torch.log(p.clamp_min(1e-30)), float("-inf")).float()


# ---- rotated mmWave panel (bf's latent form; icwm.wireless.dualband "Panel offset") ---------------------------------
def sub6_azimuth(h_sub6: torch.Tensor, spacing_sub6: float = 0.5, n_grid: int = 2048) -> torch.Tensor:
    """Dominant azimuth of a sub-6 ULA channel in the horizontal plane, ``asin(u / d)``: [..., sc6, ant6] -> [...] rad.

    A ULA sees ``sin(alpha) sin(theta)``; the horizontal-plane reading takes ``theta = 90`` degrees.
    """
    sin_t = estimate_spatial_freq(h_sub6, spacing_sub6, n_grid, covariance=True) / spacing_sub6
    return torch.asin(sin_t.clamp(-1.0, 1.0))


def beam_azimuth(beam: torch.Tensor, n_beams: int, spacing_mmw: float = 0.5) -> torch.Tensor:
    """Horizontal-plane azimuth (rad, in the mmWave panel's frame) a DFT-codebook beam points at: [...] -> [...]."""
    u = -0.5 + beam.float() / n_beams
    return torch.asin((u / spacing_mmw).clamp(-1.0, 1.0))


def rotated_angle_map(az_sub6: torch.Tensor, n_beams: int, offset_deg: torch.Tensor | float,
                      spacing_mmw: float = 0.5) -> torch.Tensor:
    """Sub-6 aided beam selection for a mmWave panel rotated by ``offset_deg`` in azimuth against the sub-6 panel.

    A ray at azimuth ``alpha`` (sub-6 frame) is at ``alpha - offset`` in the mmWave panel's frame, spatial frequency
    ``u = d_mmw sin(alpha - offset)``; the nearest DFT beam is chosen (offset 0: :func:`sub6_angle_map` in the plane).

    Args:
        az_sub6: [...] rad (:func:`sub6_azimuth`); offset_deg: [...] or scalar, degrees.

    Returns:
        [...] int64 beam index.
    """
    offset = torch.deg2rad(torch.as_tensor(offset_deg, dtype=az_sub6.dtype, device=az_sub6.device))
    return nearest_beam(spacing_mmw * torch.sin(az_sub6 - offset), n_beams)


def rotated_beam_scores(h_sub6: torch.Tensor, n_beams: int, offset_deg: torch.Tensor, spacing_sub6: float = 0.5,
                        spacing_mmw: float = 0.5) -> torch.Tensor:
    """:func:`sub6_beam_scores` for a mmWave panel rotated by ``offset_deg`` against the sub-6 panel (differentiable
    in the offset): beam ``b`` points at azimuth ``az_b`` in the mmWave frame, ``az_b + offset`` in the sub-6 frame,
    where the sub-6 spectrum is read (from the spatial covariance, as :func:`angle_spectrum_cov`).

    Args:
        h_sub6: [..., sc6, ant6] complex; offset_deg: [...] float (0: :func:`sub6_beam_scores`).

    Returns:
        [..., n_beams] float32 log-scores, max 0.
    """
    az = beam_azimuth(torch.arange(n_beams, device=h_sub6.device), n_beams, spacing_mmw)            # [n_beams]
    u6 = spacing_sub6 * torch.sin(az + torch.deg2rad(offset_deg.float())[..., None])                # [..., n_beams]
    n = torch.arange(h_sub6.shape[-1], device=h_sub6.device, dtype=torch.float32)
    a = torch.polar(torch.ones_like(u6)[..., None].expand(u6.shape + n.shape), 2 * math.pi * u6[..., None] * n)
    cov = h_sub6.transpose(-2, -1) @ h_sub6.conj()                                                  # [..., ant, ant]
    p = (a.conj() * (a @ cov.transpose(-2, -1).to(a.dtype))).sum(-1).real                          # [..., n_beams]
    p = p / p.amax(-1, keepdim=True).clamp_min(1e-30)
    return torch.log(p.clamp_min(1e-30)).float()


def kernel_mode(x: torch.Tensor, use: torch.Tensor, width: float) -> torch.Tensor:
    """Robust location of the values ``x`` selected by ``use``: the Gaussian-kernel density mode among them,
    refined by the kernel-weighted mean around it (outliers farther than a few ``width`` get no weight).

    Args:
        x: [..., n] values; use: [..., m, n] bool, which values enter estimate m; width: kernel std (units of x).

    Returns:
        [..., m] estimates; NaN where ``use`` selects nothing.
    """
    kern = torch.exp(-0.5 * ((x[..., :, None] - x[..., None, :]) / width) ** 2)        # [..., n(cand), n]
    w = use.to(x.dtype)
    score = (w[..., :, None, :] * kern[..., None, :, :]).sum(-1)                      # [..., m, n(cand)]
    mode = torch.where(use, score, -1.0).argmax(-1, keepdim=True)                     # [..., m, 1]
    centre = x[..., None, :].expand(use.shape).gather(-1, mode)                       # [..., m, 1]
    wk = w * torch.exp(-0.5 * ((x[..., None, :] - centre) / width) ** 2)              # [..., m, n]
    return (wk * x[..., None, :]).sum(-1) / wk.sum(-1)                                # 0/0 = NaN without values


def fit_panel_offset(az_sub6: torch.Tensor, beam: torch.Tensor, use: torch.Tensor, n_beams: int,
                     width_deg: float = 1.0, spacing_mmw: float = 0.5) -> torch.Tensor:
    """Panel offset (degrees) fitted to labelled pairs: each pair says ``offset_i = az_sub6 - az(beam)``; the
    estimate is their :func:`kernel_mode` (pairs whose sub-6 dominant path is not the mmWave best beam's are outliers).

    Args:
        az_sub6: [..., n] rad; beam: [..., n] int64 labels; use: [..., m, n] bool, the pairs each estimate m may read.

    Returns:
        [..., m] float32 degrees; NaN where ``use`` selects no pair.
    """
    offsets = torch.rad2deg(az_sub6 - beam_azimuth(beam, n_beams, spacing_mmw))
    return kernel_mode(offsets.float(), use, width_deg)
