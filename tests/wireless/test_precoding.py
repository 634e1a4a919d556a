"""Precoders: closed forms, invariants (zero interference, power, monotone WMMSE), Gram == antenna space,
optimal-structure round trip, i.i.d. Rayleigh reference figures (shared/ANCHORS.md) and input validation."""
import math

import pytest
import torch

from icwm.wireless import precoding as pc


def rayleigh(shape: tuple, rng: torch.Generator, dtype=torch.complex64) -> torch.Tensor:
    """CN(0, 1) entries: [*shape]."""
    z = torch.complex(torch.randn(shape, generator=rng, dtype=torch.float64),
                      torch.randn(shape, generator=rng, dtype=torch.float64)) / math.sqrt(2.0)
    return z.to(dtype)


SOLVERS = {
    "mrt": lambda h, p: pc.mrt(h, p),
    "zf": lambda h, p: pc.zf(h, p),
    "zf_equal": lambda h, p: pc.zf(h, p, waterfill=False),
    "zf_balanced": lambda h, p: pc.zf_balanced(h, p),
    "rzf": lambda h, p: pc.rzf(h, p),
    "wmmse": lambda h, p: pc.wmmse(h, p, iters=5),
    "wmmse_antenna": lambda h, p: pc.wmmse_antenna(h, p, iters=5),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_power_budget_met_shapes_and_dtype(name, rng):
    h = rayleigh((2, 3, 4, 6), rng)  # two leading batch dims
    p = torch.tensor([[1.0, 10.0, 100.0], [0.5, 3.0, 30.0]])
    W = SOLVERS[name](h, p)
    assert W.shape == (2, 3, 6, 4) and W.dtype == torch.complex64
    torch.testing.assert_close(pc.power_of(W), p, rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
def test_zf_interference_is_zero(dtype, tol, rng):
    h = rayleigh((64, 4, 8), rng, dtype)
    for W in (pc.zf(h, 10.0), pc.zf(h, 10.0, waterfill=False), pc.zf_balanced(h, 10.0)):
        E = (h @ W).abs()
        sig = torch.diagonal(E, dim1=-2, dim2=-1)
        off = E * (1 - torch.eye(4, dtype=E.dtype))
        active = sig > 1e-3 * sig.amax(-1, keepdim=True)  # water-filling may switch streams off
        ratio = off.amax(-2) / torch.where(active, sig, torch.ones_like(sig))
        assert float(ratio[active].max()) < tol


def test_zf_waterfilling_kkt(rng):
    h = rayleigh((200, 4, 4), rng)
    p = torch.full((200,), 3.0)
    W = pc.zf(h, p)
    noise = torch.diagonal(torch.linalg.inv(pc.gram(h)), dim1=-2, dim2=-1).real  # 1 / stream gain
    pk = (W.abs() ** 2).sum(-2)
    level = (pk + noise)[pk > 1e-6]
    mu = torch.where(pk > 1e-6, pk + noise, torch.full_like(pk, -1)).amax(-1)
    on = pk > 1e-6
    assert torch.allclose((pk + noise)[on], mu[:, None].expand_as(pk)[on], rtol=1e-4)  # equal water level
    assert bool((noise[~on] >= mu[:, None].expand_as(pk)[~on] * (1 - 1e-5)).all())     # off streams above it
    assert (~on).any() and level.numel() > 0  # the case with switched-off streams is exercised
    assert bool((pc.sum_rate(h, W) >= pc.sum_rate(h, pc.zf(h, p, waterfill=False)) - 1e-5).all())


def test_single_user_closed_forms(rng):
    h = rayleigh((16, 1, 5), rng, torch.complex128)
    p = 7.0
    mf = p * (h.abs() ** 2).sum((-2, -1))  # matched-filter SNR p ||h||^2
    for W in (pc.mrt(h, p), pc.zf(h, p), pc.rzf(h, p), pc.wmmse(h, p, iters=3)):
        torch.testing.assert_close(pc.sinr(h, W)[..., 0], mf, rtol=1e-10, atol=0)


def test_rzf_between_mrt_and_zf_limits(rng):
    h = rayleigh((8, 3, 5), rng, torch.complex128)
    unit = lambda W: W / W.norm(dim=-2, keepdim=True)  # noqa: E731
    phase_free = lambda A, B: (unit(A).mH @ unit(B)).diagonal(dim1=-2, dim2=-1).abs()  # noqa: E731
    low = pc.rzf(h, 1e-8)   # regularisation K/p huge -> MRT directions
    high = pc.rzf(h, 1e8)   # regularisation -> 0 -> ZF directions
    torch.testing.assert_close(phase_free(low, pc.mrt(h, 1.0)), torch.ones(8, 3, dtype=torch.float64), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(phase_free(high, pc.zf(h, 1.0, waterfill=False)), torch.ones(8, 3,
                               dtype=torch.float64), atol=1e-6, rtol=0)


def test_wmmse_monotone_and_beats_its_rzf_init(rng):
    h = rayleigh((64, 4, 4), rng)
    p = 10.0 ** (torch.rand(64, generator=rng) * 2.0)  # 0..20 dB
    W, hist = pc.wmmse(h, p, iters=15, return_history=True)
    assert hist.shape == (64, 16)
    assert bool((hist.diff(dim=-1) >= -1e-5 * hist[..., 1:]).all())
    torch.testing.assert_close(hist[..., 0], pc.sum_rate(h, pc.rzf(h, p)), rtol=1e-5, atol=0)
    torch.testing.assert_close(hist[..., -1], pc.sum_rate(h, W), rtol=1e-5, atol=0)
    assert bool((pc.sum_rate(h, W) >= pc.sum_rate(h, pc.rzf(h, p)) - 1e-5).all())
    assert float((hist[..., -1] - hist[..., 0]).mean()) > 0.5  # it really improves on RZF at N = K


def test_wmmse_best_of_inits_is_best(rng):
    h = rayleigh((32, 4, 4), rng)
    single = pc.sum_rate(h, pc.wmmse(h, 10.0, iters=10))
    best = pc.sum_rate(h, pc.wmmse(h, 10.0, iters=10, n_random_inits=3, rng=rng))
    assert bool((best >= single - 1e-5).all()) and float((best - single).max()) > 1e-3


@pytest.mark.parametrize("dtype,snr_db,rtol", [(torch.complex128, 20.0, 1e-8), (torch.complex64, 10.0, 1e-4)])
@pytest.mark.parametrize("init", ["rzf", "mrt"])
def test_wmmse_gram_equals_antenna_space(dtype, snr_db, rtol, init, rng):
    h = rayleigh((32, 4, 6), rng, dtype)
    p = 10.0 ** (snr_db / 10.0)
    rg = pc.sum_rate(h, pc.wmmse(h, p, iters=20, init=init))
    ra = pc.sum_rate(h, pc.wmmse_antenna(h, p, iters=20, init=init))
    assert float(((rg - ra).abs() / ra).max()) < rtol


def test_wmmse_complex64_is_as_accurate_as_complex128(rng):
    """The K x K work runs in double precision: float32 channels give the float64 iterates (a float32 pipeline
    drifts and can collapse onto one user at 4x4, 20 dB)."""
    h = rayleigh((128, 4, 4), rng)
    r32 = pc.sum_rate(h, pc.wmmse(h, 100.0, iters=60)).double()
    h64 = h.to(torch.complex128)
    r64 = pc.sum_rate(h64, pc.wmmse(h64, 100.0, iters=60))
    assert float(((r32 - r64).abs() / r64).max()) < 1e-5


def test_wmmse_matches_per_sample_numpy_reference(rng):
    """The benchmark's plain NumPy per-sample antenna-space WMMSE computes the same iterates."""
    from icwm.bench.solvers import wmmse_reference
    h = rayleigh((4, 4, 8), rng, torch.complex128)
    W = pc.wmmse(h, 10.0, iters=10)
    for i in range(4):
        ref = torch.from_numpy(wmmse_reference(h[i].numpy(), 10.0, 10))
        torch.testing.assert_close(pc.sum_rate(h[i], W[i]), pc.sum_rate(h[i], ref), rtol=1e-8, atol=0)


def test_structure_round_trip_at_wmmse_stationary_point(rng):
    h = rayleigh((32, 4, 4), rng, torch.complex128)
    p = torch.full((32,), 10.0, dtype=torch.float64)
    W = pc.wmmse(h, p, iters=150)  # converged: mu = sum_k omega_k |u_k|^2 / p holds, so sum lam = p exactly
    lam_p = pc.structure_params(h, W, p)
    assert lam_p.shape == (32, 4, 2) and bool((lam_p >= 0).all())
    torch.testing.assert_close(lam_p.sum(-2), torch.ones(32, 2, dtype=torch.float64))
    Wr = pc.precoder_from_structure(h, lam_p, p)
    rate, rate_r = pc.sum_rate(h, W), pc.sum_rate(h, Wr)
    assert float(((rate_r - rate).abs() / rate).max()) < 1e-3
    torch.testing.assert_close(pc.power_of(Wr), p)


def test_structure_sinr_matches_explicit_precoder_and_is_differentiable(rng):
    h = rayleigh((8, 3, 5), rng)
    p = torch.tensor([1.0, 3.0, 10.0, 30.0, 100.0, 5.0, 2.0, 50.0])
    logits = torch.randn(8, 3, 2, generator=rng, requires_grad=True)
    lam_p = torch.softmax(logits, dim=-2)
    s = pc.structure_sinr(pc.gram(h), lam_p, p)
    torch.testing.assert_close(s, pc.sinr(h, pc.precoder_from_structure(h, lam_p.detach(), p)), rtol=1e-4, atol=1e-6)
    (-torch.log2(1 + s).sum()).backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad.abs().sum()) > 0


def test_structure_lambda_zero_gives_mrt_directions(rng):
    h = rayleigh((4, 3, 6), rng, torch.complex128)
    lam_p = torch.stack([torch.zeros(4, 3), torch.full((4, 3), 1 / 3)], -1).double()
    W = pc.precoder_from_structure(h, lam_p, 1e-12)  # lam = p * 0 -> v_k = h_k^H
    ref = h.mH / h.mH.norm(dim=-2, keepdim=True)
    torch.testing.assert_close(W / W.norm(dim=-2, keepdim=True), ref)


@pytest.mark.parametrize("nt,k", [(4, 4), (6, 4)])
def test_zf_equal_power_mean_rate_closed_form(nt, k):
    """Equal-power ZF: stream gains 1/[G^{-1}]_kk ~ Gamma(nt - k + 1, 1) (complex Wishart), so
    E[sum rate] = k E[log2(1 + (p/k) X)], integrated numerically."""
    from scipy import integrate, stats
    p = 10.0
    ref = k * integrate.quad(lambda x: math.log2(1 + p / k * x) * stats.gamma.pdf(x, nt - k + 1), 0, math.inf)[0]
    h = rayleigh((4096, k, nt), torch.Generator().manual_seed(7))
    r = pc.sum_rate(h, pc.zf(h, p, waterfill=False)).double()
    assert abs(float(r.mean()) - ref) <= 3 * float(r.std()) / 64.0, (float(r.mean()), ref)


# Reference figures (shared/ANCHORS.md), i.i.d. Rayleigh, noise 1, SNR = P, 10 dB. Each mean over n channels must
# lie within 3 standard errors + 2 % of the reference (the references themselves average 100-300 channels).
ANCHOR_ROWS = {
    (4, 4): {"wmmse": 9.85, "rzf": 8.39, "zf": 6.4, "mrt": 4.92},
    (8, 4): {"wmmse": 14.75, "rzf": 14.43, "zf": 14.4, "mrt": 7.39},
    (16, 8): {"wmmse": 29.1, "rzf": 28.7, "zf": 28.4, "mrt": 13.4},
}


@pytest.mark.parametrize("nt,k", sorted(ANCHOR_ROWS))
def test_sum_rate_reference_figures(nt, k):
    rng = torch.Generator().manual_seed(2024)
    h = rayleigh((1024 if nt < 16 else 512, k, nt), rng)
    p = 10.0
    W = {"mrt": pc.mrt(h, p), "zf": pc.zf(h, p), "rzf": pc.rzf(h, p),
         "wmmse": pc.wmmse(h, p, iters=40, init="mrt", n_random_inits=2, rng=rng)}
    for name, ref in ANCHOR_ROWS[(nt, k)].items():
        r = pc.sum_rate(h, W[name]).double()
        sem = float(r.std() / math.sqrt(r.numel()))
        assert abs(float(r.mean()) - ref) <= 3 * sem + 0.02 * ref, (name, float(r.mean()), ref, sem)


def test_bad_inputs_name_the_field(rng):
    h = rayleigh((2, 5, 4), rng)
    with pytest.raises(ValueError, match="num_users"):
        pc.zf(h, 1.0)
    with pytest.raises(ValueError, match="^h: .*complex"):
        pc.rzf(h.real, 1.0)
    with pytest.raises(ValueError, match="^p: .*positive"):
        pc.mrt(h, -1.0)
    with pytest.raises(ValueError, match="^p: .*broadcastable"):
        pc.mrt(h, torch.ones(3))
    with pytest.raises(ValueError, match="^W: .*shape"):
        pc.sinr(h, torch.zeros(2, 5, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="^lam_p: "):
        pc.precoder_from_structure(h, torch.ones(2, 4, 2), 1.0)
    with pytest.raises(ValueError, match="^init: "):
        pc.wmmse(h, 1.0, init="zf")
    with pytest.raises(ValueError, match="^rng: "):
        pc.wmmse(h, 1.0, n_random_inits=2)
    with pytest.raises(ValueError, match="^h: .*shape"):
        pc.gram(torch.zeros(4, dtype=torch.complex64))


def test_wmmse_from_structure_starts_at_the_structure_only_climbs_and_keeps_a_fixed_point(rng):
    h = rayleigh((32, 4, 4), rng)
    p = 10.0 ** (torch.rand(32, generator=rng) * 2.0)  # 0..20 dB
    uniform = torch.full((32, 4, 2), 0.25)             # lambda = p_k = 1/K: RZF directions, equal powers
    W0 = pc.wmmse_from_structure(h, uniform, p, 0)
    torch.testing.assert_close(W0, pc.precoder_from_structure(h, uniform, p), rtol=1e-4, atol=1e-5)
    rates = [pc.sum_rate(h, pc.wmmse_from_structure(h, uniform, p, n)) for n in (0, 5, 20)]
    assert all(bool((b >= a - 1e-4 * a).all()) for a, b in zip(rates, rates[1:]))
    assert float((rates[-1] - rates[0]).mean()) > 0.5                 # it really moves at N = K
    torch.testing.assert_close(pc.power_of(pc.wmmse_from_structure(h, uniform, p, 5)), p, rtol=1e-5, atol=0)
    W = pc.wmmse(h, p, iters=150)                                      # a stationary point stays put
    at_fixed = pc.wmmse_from_structure(h, pc.structure_params(h, W, p), p, 10)
    assert float(((pc.sum_rate(h, at_fixed) - pc.sum_rate(h, W)).abs() / pc.sum_rate(h, W)).max()) < 1e-3
    with pytest.raises(ValueError, match="iters"):
        pc.wmmse_from_structure(h, uniform, p, -1)
