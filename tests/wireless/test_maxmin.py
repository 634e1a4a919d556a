"""Optimal max-min SINR: balanced SINRs, optimality certificates (duality feasibility test, closed forms,
dominance over every other precoder), label format, reference figures and input validation."""
import math

import pytest
import torch

from icwm.wireless import maxmin as mm
from icwm.wireless import precoding as pc


def rayleigh(shape: tuple, rng: torch.Generator, dtype=torch.complex64) -> torch.Tensor:
    """CN(0, 1) entries: [*shape]."""
    z = torch.complex(torch.randn(shape, generator=rng, dtype=torch.float64),
                      torch.randn(shape, generator=rng, dtype=torch.float64)) / math.sqrt(2.0)
    return z.to(dtype)


@pytest.mark.parametrize("k,nt", [(4, 4), (3, 8), (6, 4)])  # K > Nt is allowed for max-min
def test_equal_sinrs_full_power_and_reported_value(k, nt, rng):
    h = rayleigh((2, 16, k, nt), rng)
    p = 10.0 ** (torch.rand(2, 16, generator=rng) * 2.0)
    res = mm.maxmin_sinr(h, p)
    s_db = 10 * torch.log10(pc.sinr(h, res.W))
    assert res.W.shape == (2, 16, nt, k) and res.sinr_db.shape == (2, 16)
    assert float((s_db.amax(-1) - s_db.amin(-1)).max()) < 0.01
    torch.testing.assert_close(pc.power_of(res.W), p, rtol=1e-5, atol=0)
    torch.testing.assert_close(res.sinr_db, s_db.amin(-1))


def test_beats_every_other_precoder(rng):
    h = rayleigh((64, 4, 5), rng)
    p = 10.0 ** (torch.rand(64, generator=rng) * 2.0)
    best = mm.maxmin_sinr(h, p).sinr_db
    others = [pc.zf_balanced(h, p), pc.zf(h, p, waterfill=False), pc.rzf(h, p), pc.mrt(h, p), pc.wmmse(h, p)]
    for W in others:
        assert bool((best >= pc.min_sinr_db(h, W) - 1e-3).all())
    assert float((best - pc.min_sinr_db(h, others[0])).mean()) > 0.1  # strictly better than max-min ZF on average


def test_duality_feasibility_certificate(rng):
    """Power minimisation for targets 0.99 gamma* needs <= p; for 1.01 gamma* it needs > p (both in float64)."""
    h = rayleigh((32, 4, 4), rng, torch.complex128)
    p = 10.0
    gamma = 10.0 ** (mm.maxmin_sinr(h, p).sinr_db / 10.0)
    G = pc.gram(h)
    assert bool((mm.min_power_lambda(G, 0.99 * gamma).sum(-1) <= p).all())
    assert bool((mm.min_power_lambda(G, 1.01 * gamma).sum(-1) > p).all())


def test_orthogonal_channels_closed_form(rng):
    """Orthogonal users: no interference, SINR_k = p_k ||h_k||^2, so gamma* = p / sum_k 1/||h_k||^2."""
    q, _ = torch.linalg.qr(rayleigh((8, 6, 6), rng, torch.complex128))
    gains = torch.rand(8, 3, generator=rng, dtype=torch.float64) * 3 + 0.1
    h = torch.sqrt(gains)[..., None] * q[..., :3, :]  # [8, 3, 6], orthogonal rows
    res = mm.maxmin_sinr(h, 5.0)
    ref = 10 * torch.log10(5.0 / (1.0 / gains).sum(-1))
    torch.testing.assert_close(res.sinr_db, ref, atol=1e-3, rtol=0)


def test_label_format_and_structure_round_trip(rng):
    h = rayleigh((16, 4, 6), rng)
    p = torch.full((16,), 20.0)
    res = mm.maxmin_sinr(h, p)
    assert res.lam_p.shape == (16, 4, 2) and bool((res.lam_p >= 0).all())
    torch.testing.assert_close(res.lam_p.sum(-2), torch.ones(16, 2), rtol=1e-5, atol=1e-5)
    Wr = pc.precoder_from_structure(h, res.lam_p, p)
    torch.testing.assert_close(pc.min_sinr_db(h, Wr), res.sinr_db, atol=2e-3, rtol=0)
    s = pc.structure_sinr(pc.gram(h), res.lam_p, p)
    torch.testing.assert_close(10 * torch.log10(s.amin(-1)), res.sinr_db, atol=2e-3, rtol=0)
    torch.testing.assert_close(pc.maxmin_sinr(h, p).sinr_db, res.sinr_db)  # re-export in precoding


# shared/ANCHORS.md: optimal max-min SINR and max-min-fair ZF at 10 dB (mean of the dB values); within 3 standard
# errors + 0.2 dB (the references themselves average 100-300 channels).
ANCHORS = {(4, 4): (4.4, 0.8), (8, 4): (10.4, 10.1), (16, 8): (10.35, 10.05)}


@pytest.mark.parametrize("nt,k", sorted(ANCHORS))
def test_reference_figures(nt, k):
    h = rayleigh((512, k, nt), torch.Generator().manual_seed(99))
    for value, ref in zip((mm.maxmin_sinr(h, 10.0).sinr_db, pc.min_sinr_db(h, pc.zf_balanced(h, 10.0))),
                          ANCHORS[(nt, k)]):
        v = value.double()
        assert abs(float(v.mean()) - ref) <= 3 * float(v.std()) / math.sqrt(512) + 0.2, (float(v.mean()), ref)


def test_bad_inputs_name_the_field(rng):
    h = rayleigh((2, 3, 4), rng)
    with pytest.raises(ValueError, match="^h: .*complex"):
        mm.maxmin_sinr(h.abs(), 1.0)
    with pytest.raises(ValueError, match="^p: "):
        mm.maxmin_sinr(h, torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="^tol: "):
        mm.maxmin_sinr(h, 1.0, tol=0.0)


def test_batched_equals_per_sample_when_batch_equals_users():
    """Regression: a batch of K samples once made torch.linalg.solve read an unbatched identity as vectors."""
    g = torch.Generator().manual_seed(3)
    K = 4
    h = torch.complex(torch.randn(K, K, 6, generator=g), torch.randn(K, K, 6, generator=g)) / 2 ** 0.5
    p = torch.full((K,), 10.0)
    batched = mm.maxmin_sinr(h, p).sinr_db
    single = torch.stack([mm.maxmin_sinr(h[i:i + 1], p[i:i + 1]).sinr_db[0] for i in range(K)])
    assert torch.allclose(batched, single, atol=1e-3)


def test_a_sample_answer_does_not_depend_on_its_batch(rng):
    """Each sample stops at its own balanced iterate: alone or beside harder samples, the same bits."""
    h = rayleigh((6, 4, 5), rng)
    p = 10.0 ** (torch.rand(6, generator=rng) * 3.0)
    batched = mm.maxmin_sinr(h, p)
    for i in range(6):
        single = mm.maxmin_sinr(h[i:i + 1], p[i:i + 1])
        assert torch.equal(single.lam_p[0], batched.lam_p[i])
