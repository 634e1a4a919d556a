"""Fingerprinting: k-NN regression exactness and channel features."""
import math

import pytest
import torch

from icwm.wireless import fingerprint as fp


def test_knn_exact_at_training_points(rng):
    x = torch.randn(3, 20, 5, generator=rng)                                # [batch, n, f]
    y = torch.randn(3, 20, generator=rng)
    torch.testing.assert_close(fp.knn_regress(x, y, x, k=1), y)
    torch.testing.assert_close(fp.knn_regress(x, y, x[:, :4], k=3, weighted=True), y[:, :4])


def test_knn_linear_function_interior():
    x = torch.arange(0.0, 10.0)[:, None]                                     # 1-D grid
    y = 2.0 * x[:, 0] - 3.0
    q = torch.tensor([[0.5], [3.25], [7.9]])
    torch.testing.assert_close(fp.knn_regress(x, y, q, k=2, weighted=True), 2.0 * q[:, 0] - 3.0)
    torch.testing.assert_close(fp.knn_regress(x, y, torch.tensor([[4.5]]), k=2), torch.tensor([6.0]))
    # unweighted 4-NN at a symmetric interior point is the mean of a symmetric window: exact too
    torch.testing.assert_close(fp.knn_regress(x, y, torch.tensor([[5.5]]), k=4), torch.tensor([8.0]))


def test_knn_batched_broadcast_and_errors(rng):
    x = torch.randn(2, 7, 3, generator=rng)
    y = torch.randn(2, 7, generator=rng)
    q = torch.randn(2, 4, 3, generator=rng)
    out = fp.knn_regress(x, y, q, k=2)
    assert out.shape == (2, 4)
    torch.testing.assert_close(out[1], fp.knn_regress(x[1], y[1], q[1], k=2))
    with pytest.raises(ValueError, match="k"):
        fp.knn_regress(x, y, q, k=8)
    with pytest.raises(ValueError, match="query_x"):
        fp.knn_regress(x, y, q[..., :2], k=1)


def test_features_separate_power_and_geometry(rng):
    h = torch.complex(torch.randn(4, 16, 8, generator=rng), torch.randn(4, 16, 8, generator=rng))
    f = fp.features(h, n_delay=4)
    assert f.shape == (4, 1 + 4 * 8) and f.dtype == torch.float32
    g = fp.features(h * 10.0, n_delay=4)                                     # +20 dB
    torch.testing.assert_close(g[:, 0] - f[:, 0], torch.full((4,), 2.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(g[:, 1:], f[:, 1:], atol=1e-5, rtol=1e-4)
    # a single-tap, single-angle channel puts all profile energy in one bin
    one = torch.ones(1, 16, 8, dtype=torch.complex64)
    prof = fp.features(one, n_delay=4)[0, 1:]
    assert prof.max().item() == pytest.approx(1.0, abs=1e-5) and prof.pow(2).sum().item() == pytest.approx(1.0)
    # the full profile carries all energy (Parseval)
    assert fp.features(h, n_delay=16)[:, 1:].pow(2).sum(-1).allclose(torch.ones(4), atol=1e-5)


def test_knn_fingerprint_learns_distance_from_pathloss(rng):
    # log-distance path loss + shadowing-free Rayleigh: power feature alone determines distance well
    d = 35 + 265 * torch.rand(400, generator=rng)
    amp = (d / 100.0) ** (-1.8)                                               # 36 dB/decade amplitude^2
    h = amp[:, None, None] * torch.exp(2j * math.pi * torch.rand(400, 16, 4, generator=rng))
    f = fp.features(h.to(torch.complex64))
    pred = fp.knn_regress(f[:300], d[:300], f[300:], k=3)
    assert (pred - d[300:]).abs().mean() < 5.0


def test_calibrated_offset_is_the_leave_one_out_demo_mean(rng):
    x, y = torch.randn(3, 5, generator=rng), torch.randn(3, 5, generator=rng)
    got = fp.calibrated_offset(x, y)
    d = y - x
    for i in range(4):                                   # demos: the other demos; never the query (pair 4)
        others = [j for j in range(4) if j != i]
        assert torch.allclose(got[:, i], d[:, others].mean(-1), atol=1e-6)
    assert torch.allclose(got[:, 4], d[:, :4].mean(-1), atol=1e-6)
    y2 = y.clone()
    y2[:, 4] += 100.0
    assert torch.equal(fp.calibrated_offset(x, y2), got)
    assert fp.calibrated_offset(x[:, -2:], y[:, -2:])[:, 0].isnan().all()   # a lone demo has no other demo
    assert fp.calibrated_offset(x[:, -1:], y[:, -1:]).isnan().all()          # no demo: no calibration
    with pytest.raises(ValueError, match="calibrated_offset"):
        fp.calibrated_offset(x, y[:, :-1])                                    # pairs disagree
    with pytest.raises(ValueError, match="calibrated_offset"):
        fp.calibrated_offset(x[:, :0], y[:, :0])                              # no pair at all


def test_rsrp_calibration_recovers_path_loss_under_an_unknown_gain(rng):
    """Constant-modulus channels at power G - PL (G unknown, per episode): rsrp_cal returns PL exactly."""
    from icwm import tasks
    pl = 80.0 + 60.0 * torch.rand(2, 4, generator=rng)
    gain = torch.tensor([[95.0], [107.0]])
    phase = torch.exp(2j * math.pi * torch.rand(2, 4, 8, 3, generator=rng))
    h = (10 ** ((gain - pl) / 20))[..., None, None] * phase
    out = tasks.get("pe").baselines({"h_sub6": h.to(torch.complex64), "pathloss_db": pl})
    assert torch.allclose(out["rsrp_cal"]["pathloss_db"], pl, atol=1e-3)
    assert torch.allclose(fp.rx_power_db(h), gain - pl, atol=1e-3)
