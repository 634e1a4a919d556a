"""icwm/model/common.py: complex -> real, sinusoid codes, padding, the missing-input features, Gram statistics and the
permutation-equivariant user-set embedding."""
from __future__ import annotations

import math

import torch

from icwm.model.common import GramSet, c2r, gram_stats, pad_dim, scalar_feature, sinusoid


def test_c2r_is_the_real_imag_split():
    z = torch.complex(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])).conj()
    assert c2r(z).tolist() == [[1.0, -3.0], [-2.0, -0.5]]
    assert c2r(torch.tensor([2.0, -1.0])).tolist() == [[2.0, 0.0], [-1.0, 0.0]]


def test_sinusoid_against_the_formula():
    s = sinusoid(5, 6, torch.device("cpu"))
    for i in range(5):
        for j in range(3):
            w = 10000.0 ** (-2 * j / 6)
            assert math.isclose(float(s[i, 2 * j]), math.sin(i * w), abs_tol=1e-6)
            assert math.isclose(float(s[i, 2 * j + 1]), math.cos(i * w), abs_tol=1e-6)
    assert sinusoid(3, 5, torch.device("cpu")).shape == (3, 5)                   # odd widths too


def test_pad_dim_front_and_back():
    x = torch.arange(6.0).reshape(2, 3)
    assert pad_dim(x, 1, 5).tolist() == [[0, 1, 2, 0, 0], [3, 4, 5, 0, 0]]
    assert pad_dim(x, 0, 3, front=True).tolist() == [[0, 0, 0], [0, 1, 2], [3, 4, 5]]
    assert pad_dim(x, 1, 2) is x


def test_scalar_feature_value_or_missing_flag():
    like = torch.zeros(2, 3, 4)
    given = scalar_feature({"snr_db": torch.full((2, 3), 10.0)}, "snr_db", 20.0, like)
    missing = scalar_feature({}, "snr_db", 20.0, like)
    assert given.shape == missing.shape == (2, 3, 2)
    assert torch.equal(given, torch.tensor([0.5, 0.0]).expand(2, 3, 2))
    assert torch.equal(missing, torch.tensor([0.0, 1.0]).expand(2, 3, 2))


def test_gram_stats_closed_form(rng):
    h = torch.view_as_complex(torch.randn(2, 3, 5, 2, generator=rng))
    G = h @ h.mH
    scale = torch.tensor([1.0, 10.0])
    la, rho = gram_stats(G, scale)
    for b in range(2):
        for i in range(3):
            gi = float(h[b, i].abs().pow(2).sum())
            assert math.isclose(float(la[b, i]), math.log10(1 + float(scale[b]) * gi), rel_tol=1e-5)
            for j in range(3):
                gj = float(h[b, j].abs().pow(2).sum())
                ref = abs(complex((h[b, i] * h[b, j].conj()).sum())) / math.sqrt(gi * gj)
                assert math.isclose(float(rho[b, i, j]), ref, rel_tol=1e-5)
    torch.testing.assert_close(rho.diagonal(dim1=-2, dim2=-1), torch.ones(2, 3))


def test_gram_set_is_user_permutation_equivariant(rng):
    m = GramSet(3, 16)
    f = torch.randn(2, 4, 3, generator=rng)
    h = torch.view_as_complex(torch.randn(2, 4, 6, 2, generator=rng))
    _, rho = gram_stats(h @ h.mH, torch.ones(2))
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = m(f, rho)
        pout = m(f[:, perm], rho[:, perm][:, :, perm])
    assert out.shape == (2, 4, 16)
    torch.testing.assert_close(pout, out[:, perm], rtol=1e-5, atol=1e-6)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4                              # users are not pooled away
