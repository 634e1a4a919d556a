"""Detection: constellation, ZF/LMMSE against closed forms and Sionna, ML/K-best via Sionna, SER vs ANCHORS."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

from icwm.wireless import detection as det
from icwm.wireless import metrics


def test_qam16_unit_energy_gray_and_sionna_order():
    from sionna.phy.mapping import qam

    c = det.qam16()
    assert c.shape == (16,) and c.dtype == torch.complex64
    assert c.abs().pow(2).mean().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(c, torch.from_numpy(qam(4)).to(torch.complex64))
    d = (c[:, None] - c[None, :]).abs()
    d_min = d[d > 0].min()
    for i in range(16):
        for j in range(16):
            if i != j and abs(d[i, j] - d_min) < 1e-5:          # nearest neighbours differ in exactly one bit
                assert bin(i ^ j).count("1") == 1


def test_map_demap_roundtrip_and_nearest_point():
    idx = torch.arange(16).repeat(3)
    torch.testing.assert_close(det.hard_decision(det.map_symbols(idx)), idx)
    x = det.map_symbols(idx) + 0.3 / math.sqrt(10) * torch.exp(1j * torch.linspace(0, 6.28, 48)).to(torch.complex64)
    torch.testing.assert_close(det.hard_decision(x), idx)      # inside the decision region (half-distance 1/sqrt10)


def test_noise_var_convention():
    # per-receive-antenna SNR: total received signal power K * Es over noise_var
    torch.testing.assert_close(det.noise_var_from_snr(20.0, 4), torch.tensor(0.04))
    b = det.draw_batch((2000,), 2, 3, 4, 10.0, torch.Generator().manual_seed(3))
    signal = (b["x"] @ b["h"].transpose(-1, -2)).abs().pow(2).mean()
    noise = (b["y"] - b["x"] @ b["h"].transpose(-1, -2)).abs().pow(2).mean()
    assert (signal / noise).item() == pytest.approx(10.0, rel=0.06)


def test_zf_exact_without_noise_and_shapes(rng):
    b = det.draw_batch((2, 3), 5, 6, 4, 300.0, rng)
    x_hat, idx_hat = det.zf_detect(b["h"], b["y"])
    assert x_hat.shape == (2, 3, 5, 4) and idx_hat.dtype == torch.int64
    torch.testing.assert_close(x_hat, b["x"], atol=1e-4, rtol=0)
    torch.testing.assert_close(idx_hat, b["idx"])
    with pytest.raises(ValueError, match="y"):
        det.zf_detect(b["h"], b["y"][..., :5])


def test_lmmse_matches_sionna_equalizer(rng):
    from sionna.phy.mimo import lmmse_equalizer

    b = det.draw_batch((16,), 3, 4, 3, 5.0, rng)
    x_hat, _ = det.lmmse_detect(b["h"], b["y"], b["noise_var"])
    s = b["noise_var"] * torch.eye(4, dtype=torch.complex64).expand(16, 3, 4, 4)
    ref, _ = lmmse_equalizer(b["y"], b["h"][:, None].expand(16, 3, 4, 3), s)
    torch.testing.assert_close(x_hat, ref, atol=1e-4, rtol=1e-4)


def test_ml_torch_equals_sionna_ml_and_exhaustive_kbest(rng):
    b = det.draw_batch((6,), 4, 4, 3, 12.0, rng)
    _, i_torch = det.ml_detect(b["h"], b["y"], b["noise_var"])
    _, i_sionna = det.ml_detect(b["h"], b["y"], b["noise_var"], backend="sionna")
    _, i_kb = det.kbest_detect(b["h"], b["y"], b["noise_var"], k=16 ** 2)     # all paths kept: exact ML
    torch.testing.assert_close(i_torch, i_sionna)
    torch.testing.assert_close(i_torch, i_kb)


def _zf_ser_closed_form(n_rx: int, n_user: int, snr_db: float) -> float:
    """E over Rayleigh of 16-QAM SER; post-ZF SNR ~ (snr/K) Gamma(n_rx - K + 1, 1)."""
    mean, dof = 10 ** (snr_db / 10) / n_user, n_rx - n_user + 1

    def f(g: float) -> float:
        q = norm.sf(math.sqrt(g / 5))
        return (3 * q - 2.25 * q * q) * g ** (dof - 1) * math.exp(-g / mean) / (math.gamma(dof) * mean ** dof)
    return quad(f, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("n_rx,n_user,anchors", [(4, 4, {"zf": 0.193, "lmmse": 0.147, "ml": 0.013}),
                                                  (2, 2, {"zf": 0.117, "lmmse": 0.103, "ml": 0.041})])
def test_ser_ordering_and_anchors_at_20db(n_rx, n_user, anchors):
    n_lin, n_ml = 20000, 2000                     # linear detectors are cheap: more vectors, tighter check
    b = det.draw_batch((n_lin,), 1, n_rx, n_user, 20.0, torch.Generator().manual_seed(7))
    args = (b["h"], b["y"], b["noise_var"])
    wrong = {"zf": det.zf_detect(*args)[1] != b["idx"], "lmmse": det.lmmse_detect(*args)[1] != b["idx"],
             "ml": det.ml_detect(*(a[:n_ml] for a in args[:2]), b["noise_var"])[1] != b["idx"][:n_ml]}
    ser = {name: w.float().mean().item() for name, w in wrong.items()}
    same = {name: w[:n_ml].float().mean().item() for name, w in wrong.items()}     # on the same draws
    assert same["ml"] <= same["lmmse"] + 0.004 and same["lmmse"] <= same["zf"] + 0.004
    for name, ref in anchors.items():          # 4 std, counting vectors (not symbols) as independent
        n = n_ml if name == "ml" else n_lin
        assert abs(ser[name] - ref) < 4 * math.sqrt(ref * (1 - ref) / n), (name, ser[name], ref)
    zf_ref = _zf_ser_closed_form(n_rx, n_user, 20.0)
    assert abs(ser["zf"] - zf_ref) < 4 * math.sqrt(zf_ref * (1 - zf_ref) / n_lin)
    assert abs(zf_ref - anchors["zf"]) < 0.007      # the SNR convention reproduces the ANCHORS table


def test_kbest_small_k_between_lmmse_and_ml():
    b = det.draw_batch((1500,), 1, 4, 4, 20.0, torch.Generator().manual_seed(11))
    ser = {k: metrics.ser(det.kbest_detect(b["h"], b["y"], b["noise_var"], k=k)[1], b["idx"]).mean().item()
           for k in (4, 16)}
    lmmse = metrics.ser(det.lmmse_detect(b["h"], b["y"], b["noise_var"])[1], b["idx"]).mean().item()
    assert ser[16] <= ser[4] < lmmse
    assert abs(ser[4] - 0.038) < 4 * math.sqrt(0.038 * 0.962 / 1500)        # ANCHORS K=4: 0.038


def test_ep_between_lmmse_and_ml():
    """EP (Cespedes et al. 2014) on 4x4 i.i.d. Rayleigh, 20 dB: far better than LMMSE, not better than ML."""
    b = det.draw_batch((400,), 8, 4, 4, 20.0, torch.Generator().manual_seed(12))
    ser = {name: metrics.ser(fn(b["h"], b["y"], b["noise_var"])[1], b["idx"]).mean().item()
           for name, fn in (("lmmse", det.lmmse_detect), ("ep", det.ep_detect), ("ml", det.ml_detect))}
    assert ser["ml"] <= ser["ep"] < 0.5 * ser["lmmse"], ser


def test_ep_on_an_orthogonal_channel_is_symbol_by_symbol_optimal():
    """With h^H h = a I the posterior factorises: EP's decisions are the nearest constellation points of h^H y / a."""
    g = torch.Generator().manual_seed(13)
    b = det.draw_batch((50,), 4, 4, 4, 12.0, g)
    q, _ = torch.linalg.qr(b["h"])                                        # unitary [50, 4, 4]
    y = b["x"] @ (2.0 * q).transpose(-1, -2) + 0.3 * (b["y"] - b["x"] @ b["h"].transpose(-1, -2))
    _, idx = det.ep_detect(2.0 * q, y, b["noise_var"], iters=3)
    ref = det.hard_decision((y @ q.conj()) / 2.0)
    assert torch.equal(idx, ref)


@pytest.mark.parametrize("kw", [dict(iters=0), dict(damping=0.0), dict(damping=1.5)])
def test_ep_rejects_bad_settings(kw):
    b = det.draw_batch((2,), 1, 4, 4, 20.0, torch.Generator().manual_seed(14))
    with pytest.raises(ValueError):
        det.ep_detect(b["h"], b["y"], b["noise_var"], **kw)
