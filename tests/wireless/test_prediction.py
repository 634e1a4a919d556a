"""Channel prediction: exact Prony extrapolation, Wiener closed form vs ANCHORS, AR on a Jakes process."""
import math

import pytest
import torch

from icwm.wireless import metrics
from icwm.wireless import prediction as pred

ANCHOR_WIENER_DB = {10: (-22.5, -18.9), 30: (-19.0, -12.3), 60: (-16.0, -7.0), 100: (-13.4, -3.2)}
NOISE_VAR = 10 ** (-1.8)       # 18 dB


def _noisy(h, nv, g):
    n = torch.complex(torch.randn(h.shape, generator=g), torch.randn(h.shape, generator=g)) * math.sqrt(nv / 2)
    return h + n


def _jakes(speed_kmh, g, batch=48, n_time=20):
    fd = pred.doppler_norm(speed_kmh, 2.4e9, 0.5e-3)
    h = pred.jakes_series((batch, 8, 4), n_time, fd, g).permute(0, 3, 1, 2)   # [batch, time, sc, ant]
    return h, fd


def test_repeat_last_shapes():
    h = torch.randn(2, 5, 3, 4, dtype=torch.complex64)
    out = pred.repeat_last(h, 3)
    assert out.shape == (2, 3, 3, 4)
    torch.testing.assert_close(out[:, 2], h[:, -1])
    with pytest.raises(ValueError, match="t_out"):
        pred.repeat_last(h, 0)


def test_vector_prony_extrapolates_sum_of_exponentials_exactly(rng):
    z = torch.tensor([0.99 * torch.exp(torch.tensor(0.3j)), torch.exp(torch.tensor(-1.1j)),
                      0.95 * torch.exp(torch.tensor(2.0j))], dtype=torch.complex128)       # shared poles
    c = torch.complex(torch.randn(2, 3, 6, 5, generator=rng), torch.randn(2, 3, 6, 5, generator=rng))
    t = torch.arange(20, dtype=torch.float64).to(torch.complex128)
    h = torch.einsum("bksa,kt->btsa", c.to(torch.complex128), z[:, None] ** t).to(torch.complex64)  # [b, t, sc, ant]
    out = pred.prony_predict(h[:, :16], 4, n_exp=3)
    assert out.shape == (2, 4, 6, 5)
    assert metrics.nmse_db(out, h[:, 16:], (-3, -2, -1)).max() < -60
    assert metrics.nmse_db(pred.repeat_last(h[:, :16], 4), h[:, 16:], (-3, -2, -1)).max() > -10


def test_wiener_closed_form_reproduces_anchors():
    for speed, (ref1, ref4) in ANCHOR_WIENER_DB.items():
        acf = pred.jakes_acf(24, pred.doppler_norm(speed, 2.4e9, 0.5e-3)).double()
        got = []
        for hzn in (1, 4):
            a = pred.wiener_coeffs(acf.to(torch.complex128), 16, hzn, NOISE_VAR)
            got.append(10 * math.log10(1 - (acf[hzn:hzn + 16] * a).sum().real.item()))
        assert got == pytest.approx([ref1, ref4], abs=0.1)


def test_ar_on_jakes_close_to_wiener_and_beats_repeat_last(rng):
    h, fd = _jakes(10, rng)
    hist, fut = _noisy(h[:, :16], NOISE_VAR, rng), h[:, 16:]
    nmse = lambda p: metrics.mean_db(metrics.nmse(p, fut, (-2, -1)), 0)             # [t_out] dB
    wiener = nmse(pred.ar_predict(hist, 4, 16, acf=pred.jakes_acf(24, fd), noise_var=NOISE_VAR, multi_step="direct"))
    ar = nmse(pred.ar_predict(hist, 4))                        # order 8 fitted on the 16 noisy samples only
    rl = nmse(pred.repeat_last(hist, 4))
    assert abs(wiener[0].item() + 22.5) < 1.5 and abs(wiener[3].item() + 18.9) < 1.5
    assert wiener[0] - 1.0 < ar[0] < -18.5                     # measured about -20 dB at horizon 1
    assert (ar < rl - 1.0).all()


def test_ar_fit_recovers_ar1_coefficient(rng):
    a_true = 0.9 * complex(math.cos(0.2), math.sin(0.2))
    x = torch.zeros(4, 200, 8, 2, dtype=torch.complex64)
    e = _noisy(torch.zeros_like(x), 1.0, rng)
    for t in range(1, 200):
        x[:, t] = a_true * x[:, t - 1] + e[:, t]
    a = pred.ar_fit(x, order=2, ridge=0.0)
    assert (a[:, 0] - a_true).abs().max() < 0.03 and a[:, 1].abs().max() < 0.03
