"""pre_* in-context fit (``model.precoding_fit``): regressors against closed forms, the fit against least squares,
its SNR signature on max-min optima, and the switches."""
from __future__ import annotations

import math

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.model import precoding
from icwm.model.precoding import PrecodingFit, fit_regressors, fit_targets
from icwm.wireless import maxmin


def _channels(B: int, P: int, K: int, N: int, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    """Rayleigh channels with per-user amplitudes spread over ``spread`` nepers: [B, P, K, N] complex64."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, P, K, N, 2, generator=g)
    return torch.complex(z[..., 0], z[..., 1]) * torch.exp(spread * torch.randn(B, P, K, 1, generator=g))


def test_regressors_are_gain_and_the_channel_share_outside_the_other_users_span(monkeypatch):
    """K < Nt, vanishing loading: orthogonality = 1 - |projection of the unit channel on the others' span|^2."""
    monkeypatch.setattr(precoding, "LOADING", 1e-9)
    h = _channels(2, 3, 4, 9).to(torch.complex128)
    f = fit_regressors(h @ h.mH)                                                  # [B, P, K, 3]
    gain = h.abs().pow(2).sum(-1)
    orth = torch.empty_like(gain)
    for k in range(4):
        others = torch.cat((h[..., :k, :], h[..., k + 1:, :]), -2).mT               # [B, P, N, K-1]
        q, _ = torch.linalg.qr(others)
        u = h[..., k, :] / gain[..., k, None].sqrt()
        orth[..., k] = 1.0 - (q.mH @ u[..., None]).abs().pow(2).sum((-1, -2))
    centre = lambda t: t - t.mean(-1, keepdim=True)                               # noqa: E731
    assert torch.allclose(f[..., 0], torch.ones_like(gain.float()))
    assert torch.allclose(f[..., 1], centre(gain.log()).float(), atol=1e-5)
    assert torch.allclose(f[..., 2], centre(orth.log()).float(), atol=1e-4)


def test_levels_are_what_centring_removes(monkeypatch):
    """``model.probe_levels``: each pair's mean log gain and mean log orthogonality over its users (own channel, not
    the earlier pairs') and K / Nt; scaling a pair's channel moves only its mean log gain, while the centred
    regressors (and so the map) do not move at all."""
    monkeypatch.setattr(precoding, "LOADING", 1e-9)
    h = _channels(2, 3, 4, 8, seed=3).to(torch.complex128)
    lam_p = torch.softmax(torch.randn(2, 3, 4, 2, generator=torch.Generator().manual_seed(4)), -2)
    fit = PrecodingFit(ModelConfig.flavour("debug"))
    G = h @ h.mH
    _, _, raw = fit(G, lam_p, n_ant=8)
    assert raw.shape == (2, 3, precoding.N_MAP + precoding.N_LEVELS)
    f = precoding.log_gain_orth(G)
    torch.testing.assert_close(raw[..., precoding.N_MAP:precoding.N_MAP + 2], f.mean(-2))
    torch.testing.assert_close(raw[..., -1], torch.full((2, 3), 0.5))
    torch.testing.assert_close(raw[..., precoding.N_MAP], h.abs().pow(2).sum(-1).log().mean(-1).float())
    scaled = h * torch.tensor([1.0, 3.0, 1.0], dtype=h.dtype)[None, :, None, None]   # pair 1 x3 in amplitude
    _, _, raw_s = fit(scaled @ scaled.mH, lam_p, n_ant=8)
    torch.testing.assert_close(raw_s[..., :precoding.N_MAP], raw[..., :precoding.N_MAP], atol=1e-5, rtol=0)
    delta = raw_s[..., precoding.N_MAP] - raw[..., precoding.N_MAP]
    torch.testing.assert_close(delta, torch.tensor([0.0, 2 * math.log(3.0), 0.0]).expand(2, 3), atol=1e-5, rtol=0)
    assert fit(G, lam_p)[2].shape[-1] == precoding.N_MAP                          # no n_ant: the map alone


def test_a_user_in_the_span_of_the_others_reads_a_finite_low_orthogonality():
    """K > Nt (rank-deficient Gram, every user in the others' span): the loading keeps the regressors finite and
    their spread bounded."""
    h = _channels(1, 1, 5, 3)
    f = fit_regressors(h @ h.mH)
    assert torch.isfinite(f).all() and f[..., 2].max() - f[..., 2].min() < 12.0


def test_the_fit_is_least_squares_on_the_earlier_pairs_only():
    """Vanishing ridge: pair p's map is the LS fit of log(K lam_p) on the regressors of pairs < p; pair 0 gets 0."""
    B, P, K = 2, 5, 4
    h = _channels(B, P, K, 8, seed=1)
    lam_p = torch.softmax(torch.randn(B, P, K, 2, generator=torch.Generator().manual_seed(2)), -2)
    fit = PrecodingFit(ModelConfig.flavour("debug", icr_n0=1e-9))
    G = h @ h.mH
    fitted, _, raw = fit(G, lam_p)
    reg = fit_regressors(G).double()
    target = torch.log(lam_p.double() * K)
    assert fitted[:, 0].abs().max() == 0 and raw[:, 0, :-2].abs().max() == 0 and raw[:, 0, -1].abs().max() == 0
    for p in range(2, P):         # p = 1: 4 samples of 3 regressors, still determined
        X, Y = reg[:, :p].flatten(1, 2), target[:, :p].flatten(1, 2)             # [B, p K, F], [B, p K, 2]
        W = torch.linalg.lstsq(X, Y).solution                                     # [B, F, 2]
        assert torch.allclose(fitted[:, p].double(), reg[:, p] @ W, atol=2e-3)
        assert torch.allclose(raw[:, p, :-2].double(), W.mT.flatten(1), atol=2e-3)   # the map, [2 x F] row-major
        assert torch.allclose(raw[:, p, -2:], torch.tensor([1.0 / p, 1.0]))


def test_the_fitted_map_shifts_with_the_snr_of_max_min_optima():
    """Max-min optima: uplink powers go as 1 / gain at low SNR and towards zero-forcing's 1 / (gain x orthogonality)
    at high SNR, so the lambda column's orthogonality coefficient falls from ~0 to ~-1 as the SNR rises (gains
    spread little, so no user falls under the label floor)."""
    h = _channels(1, 9, 6, 12, seed=3, spread=0.3)
    fit = PrecodingFit(ModelConfig.flavour("debug", icr_n0=1e-6))
    coef = []
    for snr_db in (-30.0, 0.0, 30.0):
        lam_p = maxmin.maxmin_sinr(h, torch.full((1, 9), 10.0 ** (snr_db / 10.0))).lam_p
        reg = fit_regressors(h @ h.mH)[:, :, None]
        maps = fit.icr.maps(reg, fit_targets(lam_p)[:, :, None])
        coef.append(maps[0, -1, 0, 0].detach())                                  # lambda row, the last pair's map
    assert all(abs(c[1] + 1.0) < 0.05 for c in coef)                              # log gain: -1 throughout
    assert coef[0][2] > -0.05 and abs(coef[2][2] + 1.0) < 0.1 and coef[0][2] > coef[1][2] > coef[2][2]


@pytest.mark.parametrize("icr,on", [(True, True), (False, True), (True, False)])
def test_the_fit_exists_only_with_icr_and_the_option(icr: bool, on: bool):
    model = build_model(ModelConfig.flavour("debug", icr=icr, precoding_fit=on))
    for task in ("pre_sr", "pre_mm"):
        assert (model.embedders[task].fit is not None) == (icr and on)


def test_untrained_fit_summary_is_zero():
    """Zero-initialised output layer: the fitted map adds nothing to the tokens until trained (the Gram embedding's
    two extra per-user features, the fitted labels, do)."""
    fit = PrecodingFit(ModelConfig.flavour("debug"))
    h = _channels(2, 4, 3, 6)
    _, summary, _ = fit(h @ h.mH, torch.full((2, 4, 3, 2), 1.0 / 3))
    assert summary.shape == (2, 4, 1, 32) and summary.abs().max() == 0
