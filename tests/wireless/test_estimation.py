"""Channel estimation: exact LS interpolation, LMMSE vs Sionna's 1-D LMMSE interpolator and its closed-form MSE."""
import math

import pytest
import torch

from icwm.wireless import estimation as est
from icwm.wireless import metrics

N_SC = 48


def _crandn(shape, g):
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)) / math.sqrt(2)


def _draw_correlated(n, cov, g):
    """[n, sc] complex samples with covariance ``cov`` (colouring by the PSD square root)."""
    lam, vec = torch.linalg.eigh(cov.to(torch.complex128))
    root = vec * lam.clamp_min(0).sqrt()                                  # cov = root root^H
    return (_crandn((n, cov.shape[-1]), g).to(torch.complex128) @ root.T).to(torch.complex64)


def test_ls_interp_exact_for_channel_linear_in_frequency(rng):
    pil = est.comb_pilots(N_SC, 4)
    assert pil.tolist() == list(range(0, 48, 4))
    a, b = _crandn((2, 3, 1, 5), rng), _crandn((2, 3, 1, 5), rng)         # [batch, time, 1, ant]
    s = torch.arange(N_SC, dtype=torch.float32)[:, None]
    h = a + b * s                                                         # [batch, time, sc, ant]
    out = est.ls_interp(h[..., pil, :], pil, N_SC)
    assert out.shape == h.shape and out.dtype == torch.complex64
    torch.testing.assert_close(out, h, atol=1e-4, rtol=1e-5)
    flat = est.ls_interp(h[..., pil, :], pil, N_SC, edge="flat")
    torch.testing.assert_close(flat[..., 45:, :], h[..., 44:45, :].expand(-1, -1, 3, -1))
    torch.testing.assert_close(flat[..., :45, :], h[..., :45, :], atol=1e-4, rtol=1e-5)


def test_interp_rejects_bad_pilots():
    with pytest.raises(ValueError, match="pilot_idx"):
        est.interp_matrix(torch.tensor([4, 0]), N_SC)
    with pytest.raises(ValueError, match="pilot_idx"):
        est.interp_matrix(torch.tensor([0, 48]), N_SC)


def test_lmmse_matches_sionna_lmmse_interpolator(rng):
    from sionna.phy.ofdm.channel_estimation import _LMMSEEstimator1D

    pil = est.comb_pilots(N_SC, 4, offset=1)
    cov = est.exp_pdp_covariance(N_SC, 30e3, 300e-9)
    nv = 0.05
    h_ls = _crandn((3, 2, pil.numel(), 1), rng)                           # [batch, time, pilot, ant=1]
    ours = est.lmmse_estimate(h_ls, pil, N_SC, cov, nv)                   # [batch, time, sc, 1]
    mask = torch.zeros(1, 1, 2, N_SC, dtype=torch.int64)
    mask[..., pil] = 1
    ref_est = _LMMSEEstimator1D(mask.numpy(), cov, last_step=True, precision="single", device="cpu")
    grid = torch.zeros(3, 1, 1, 1, 1, 2, N_SC, dtype=torch.complex64)
    grid[..., pil] = h_ls[..., 0][:, None, None, None, None]
    ref, err_var = ref_est(grid, torch.full(grid.shape, nv))
    torch.testing.assert_close(ours[..., 0], ref[:, 0, 0, 0, 0], atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(est.lmmse_mse(pil, cov, nv).expand(2, -1), err_var[0, 0, 0, 0, 0], atol=2e-4, rtol=1e-3)


def test_lmmse_beats_ls_and_matches_closed_form_mse(rng):
    pil = est.comb_pilots(N_SC, 4)
    cov = est.exp_pdp_covariance(N_SC, 60e3, 500e-9)
    h = _draw_correlated(4000, cov, rng)                                  # [n, sc]
    nv = 10 ** (-1.0)                                                     # 10 dB
    h_ls = (h[:, pil] + math.sqrt(nv) * _crandn((4000, pil.numel()), rng))[:, None, :, None]
    target = h[:, None, :, None]
    ls = est.ls_interp(h_ls, pil, N_SC)
    lm = est.lmmse_estimate(h_ls, pil, N_SC, cov, torch.tensor(nv))
    e_ls = metrics.nmse(ls, target, (-3, -2, -1)).mean()
    e_lm = metrics.nmse(lm, target, (-3, -2, -1)).mean()
    assert e_lm < 0.5 * e_ls
    mse = (lm - target).abs().pow(2).mean().item()
    assert mse == pytest.approx(est.lmmse_mse(pil, cov, nv).mean().item(), rel=0.06)
    # covariance estimated from the samples gives almost the same performance (genie-statistics baseline)
    lm_hat = est.lmmse_estimate(h_ls, pil, N_SC, est.freq_covariance(h), nv)
    assert metrics.nmse(lm_hat, target, (-3, -2, -1)).mean() < 1.05 * e_lm


def test_freq_covariance_recovers_covariance(rng):
    cov = est.exp_pdp_covariance(16, 60e3, 500e-9)
    r = est.freq_covariance(_draw_correlated(20000, cov, rng))
    assert (r - cov).abs().max() < 0.04
    torch.testing.assert_close(r, r.mH)
    assert est.freq_covariance(_draw_correlated(10, cov, rng), loading=0.1).shape == (16, 16)
