"""BandMap (pf): the in-context UL -> DL fit per (delay bin, beam) against a float64 loop, recovery of an exact
band map from a few demonstrations, and block causality."""
import math

import torch

from icwm.model.band import BAND_HALF_WIDTH, BandMap
from icwm.wireless.duplex import from_delay_beam, to_delay_beam


def _cn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.view_as_complex(torch.randn(*shape, 2, generator=g))


def _set(m: BandMap, n0: float, pool: float, slope: float = 0.0) -> None:
    with torch.no_grad():
        m.log_n0.fill_(math.log(n0))
        m.log_pool.fill_(math.log(pool))
        m.n0_slope.fill_(slope)


def _reference(ul, dl, base, n0: float, pool: float, slope: float) -> torch.Tensor:
    """Float64 loop: per pair p and unit (delay, beam), ridge of (dl - base) on [ul taps, base] over pairs < p
    (ridge n0 * exp(slope / p) samples at the pair's own regressor power)."""
    ul, dl, base = (to_delay_beam(t.to(torch.complex128)) for t in (ul, dl, base))
    b, p, t, d, n = ul.shape
    h = BAND_HALF_WIDTH

    def reg(bi, pi, di, ni):                                                # [T, F]
        taps = [ul[bi, pi, :, (di - s) % d, ni] for s in range(-h, h + 1)]
        return torch.stack(taps + [base[bi, pi, :, di, ni]], -1)

    out = torch.zeros(b, p, t, d, n, dtype=torch.complex128)
    for bi in range(b):
        for pi in range(1, p):
            stats = {}
            for di in range(d):
                for ni in range(n):
                    gram = sum(reg(bi, q, di, ni).T @ reg(bi, q, di, ni).conj() for q in range(pi))
                    cross = sum((dl[bi, q, :, di, ni] - base[bi, q, :, di, ni]) @ reg(bi, q, di, ni).conj()
                                for q in range(pi))
                    stats[di, ni] = (gram, cross)
            g_mean = sum(s[0] for s in stats.values()) / (d * n)
            c_mean = sum(s[1] for s in stats.values()) / (d * n)
            for (di, ni), (gram, cross) in stats.items():
                r = reg(bi, pi, di, ni)
                lam = n0 * math.exp(slope / pi) * r.abs().pow(2).mean()
                gram_u, cross_u = gram + pool * g_mean, cross + pool * c_mean
                coef = torch.linalg.solve(gram_u + lam * torch.eye(r.shape[-1]), cross_u.conj()).conj()  # [F]
                out[bi, pi, :, di, ni] = r @ coef
    return from_delay_beam(out)


def test_band_map_matches_float64_loop():
    g = torch.Generator().manual_seed(1)
    m = BandMap()
    _set(m, 0.7, 0.2, slope=0.9)
    ul, dl, base = (_cn(2, 4, 1, 6, 3, g=g) for _ in range(3))
    with torch.no_grad():
        out = m(ul, dl, base)
    assert out.shape == ul.shape and out.dtype == torch.complex64
    ref = _reference(ul, dl, base, 0.7, 0.2, 0.9)
    torch.testing.assert_close(out.to(torch.complex128), ref, atol=2e-5, rtol=1e-4)
    assert out[:, 0].abs().max() == 0                                       # pair 0: no earlier pair, no correction


def test_band_map_recovers_an_exact_per_bin_map():
    """One path per (delay, beam) bin: DL = phase(bin) * UL in that domain, with random small-scale gains per pair.
    With the earlier pairs alone the query's DL is recovered (base = 0, tiny ridge)."""
    g = torch.Generator().manual_seed(2)
    b, p, d, n = 3, 6, 8, 4
    phase = torch.exp(2j * math.pi * torch.rand(b, 1, 1, d, n, generator=g))    # the link's geometry
    gains = _cn(b, p, 1, d, n, g=g)                                               # per snapshot
    ul, dl = from_delay_beam(gains), from_delay_beam(phase * gains)
    m = BandMap()
    _set(m, 1e-6, 1e-6)
    with torch.no_grad():
        out = m(ul, dl, torch.zeros_like(dl))
    err = (out[:, -1] - dl[:, -1]).abs().pow(2).sum() / dl[:, -1].abs().pow(2).sum()
    assert err < 1e-6
    nearest = (ul[:, -1] - dl[:, -1]).abs().pow(2).sum() / dl[:, -1].abs().pow(2).sum()
    assert nearest > 0.5                                                          # the map is not the identity


def test_band_map_is_block_causal():
    g = torch.Generator().manual_seed(3)
    m = BandMap()
    ul, dl, base = (_cn(2, 5, 1, 8, 3, g=g) for _ in range(3))
    with torch.no_grad():
        out = m(ul, dl, base)
        dl2 = dl.clone()
        dl2[:, 2:] = _cn(2, 3, 1, 8, 3, g=g)                                     # labels of pairs >= 2 changed
        out2 = m(ul, dl2, base)
    torch.testing.assert_close(out[:, :3], out2[:, :3])
    assert (out[:, 3:] - out2[:, 3:]).abs().max() > 1e-3


def test_band_map_rejects_mismatched_shapes():
    m = BandMap()
    g = torch.Generator().manual_seed(4)
    try:
        m(_cn(1, 2, 1, 8, 3, g=g), _cn(1, 2, 1, 6, 3, g=g), _cn(1, 2, 1, 8, 3, g=g))
    except ValueError as e:
        assert "BandMap" in str(e)
    else:
        raise AssertionError("mismatched shapes accepted")
