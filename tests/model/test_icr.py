"""InContextRidge (icwm/model/icr.py): the closed-form ridge fit of pair p to the pairs before it, against numpy
least squares; pair 0 gets zero; block causality; scale equivariance per unit; partial pooling over units."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icwm.model import ModelConfig
from icwm.model.icr import InContextRidge, exclusive_cumsum, prefix_residual_power, prefix_stats, relative_residual


def _icr(n0: float = 0.5, slope: float = 0.7, pool: float = 0.3) -> InContextRidge:
    m = InContextRidge(ModelConfig.flavour("debug"))
    with torch.no_grad():
        m.log_n0.fill_(math.log(n0))
        m.slope.fill_(slope)
        m.log_pool.fill_(math.log(pool))
    return m


def _data(b: int, p: int, u: int, s: int, f: int, o: int, seed: int, dtype=torch.complex128):
    g = torch.Generator().manual_seed(seed)
    cn = lambda *sh: torch.view_as_complex(torch.randn(*sh, 2, generator=g, dtype=torch.float64))  # noqa: E731
    if dtype.is_complex:
        return cn(b, p, u, s, f).to(dtype), cn(b, p, u, s, o).to(dtype)
    return (torch.randn(b, p, u, s, f, generator=g, dtype=torch.float64).to(dtype),
            torch.randn(b, p, u, s, o, generator=g, dtype=torch.float64).to(dtype))


def _reference(reg: torch.Tensor, tgt: torch.Tensor, n0: float, slope: float, pool: float) -> np.ndarray:
    """numpy lstsq per (episode, pair, unit): rows = the samples of pairs < p of the unit (weight 1) and of every unit
    (weight pool / U, i.e. pool x the mean statistics), plus sqrt(ridge) I; ridge = n0 exp(slope / max(p, 1)) x the
    mean power of pair p's own regressors in the unit."""
    x, t = reg.numpy().astype(np.complex128), tgt.numpy().astype(np.complex128)
    n_b, n_p, n_u, _, n_f = x.shape
    out = np.zeros(t.shape, dtype=np.complex128)
    for bi in range(n_b):
        for p in range(1, n_p):
            for u in range(n_u):
                rows, targets, weights = [], [], []
                for v in range(n_u):
                    w = (1.0 if v == u else 0.0) + (pool / n_u if n_u > 1 else 0.0)
                    rows.append(x[bi, :p, v].reshape(-1, n_f))
                    targets.append(t[bi, :p, v].reshape(-1, t.shape[-1]))
                    weights.append(np.full(rows[-1].shape[0], math.sqrt(w)))
                lam = n0 * math.exp(slope / max(p, 1)) * np.mean(np.abs(x[bi, p, u]) ** 2)
                wt = np.concatenate(weights)[:, None]
                a = np.concatenate([np.concatenate(rows) * wt, math.sqrt(lam) * np.eye(n_f)])
                rhs = np.concatenate([np.concatenate(targets) * wt, np.zeros((n_f, t.shape[-1]))])
                coef = np.linalg.lstsq(a, rhs, rcond=None)[0]                      # [F, O]
                out[bi, p, u] = x[bi, p, u] @ coef
    return out


@pytest.mark.parametrize("dtype", [torch.complex128, torch.complex64, torch.float64])
@pytest.mark.parametrize("n_units", [1, 3])
def test_equals_the_closed_form_ridge_of_the_earlier_pairs(dtype, n_units):
    reg, tgt = _data(2, 5, n_units, 4, 3, 2, seed=1, dtype=dtype)
    m = _icr(0.5, 0.7, 0.3)
    with torch.no_grad():
        out = m(reg, tgt)
    assert out.shape == tgt.shape and out.dtype == dtype
    ref = _reference(reg, tgt, 0.5, 0.7, 0.3)
    tol = 1e-4 if dtype == torch.complex64 else 1e-6      # the ridge parameters are float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol)
    assert torch.equal(out[:, 0], torch.zeros_like(out[:, 0]))                    # pair 0: nothing to fit
    assert out[:, 1:].abs().min() > 0


def test_ridge_schedule():
    m = _icr(0.5, 0.7)
    got = m.ridge(4).detach()
    ref = torch.tensor([0.5 * math.exp(0.7 / max(j, 1)) for j in range(4)])
    torch.testing.assert_close(got, ref)


def _tabled(option: str) -> tuple[InContextRidge, InContextRidge, torch.Tensor, torch.Tensor]:
    """The debug flavour's ICR with the per-j table ``option`` on, the same ICR without it, and data [B 2, P 5, U 3,
    sample 4, F 3] / [..., O 2]; asserts the untouched table (zeros) gives the schedule's fits."""
    m, ref = InContextRidge(ModelConfig.flavour("debug", **{option: True})), _icr(1.0, 0.0, 0.1)
    reg, tgt = _data(2, 5, 3, 4, 3, 2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(m(reg, tgt), ref(reg, tgt))                    # table 0: the schedule's fits
    return m, ref, reg, tgt


def test_ridge_table_starts_as_the_schedule_and_shrinks_one_j_alone():
    m, ref, reg, tgt = _tabled("icr_ridge_table")
    assert m.table.shape == (ModelConfig.flavour("debug").k_max + 1,)
    with torch.no_grad():
        m.table[1] = 30.0                                                          # j = 1 only: a ridge of e^30
        torch.testing.assert_close(m.ridge(4), torch.tensor([1.0, math.exp(30.0), 1.0, 1.0]))
        out, base = m(reg, tgt), ref(reg, tgt)
    assert out[:, 1].abs().max() < 1e-9 * base[:, 1].abs().max()                # one demo: fit shrunk to zero
    torch.testing.assert_close(out[:, 2:], base[:, 2:])                           # more demos: unchanged


def test_pool_table_starts_as_the_schedule_and_pools_one_j_alone():
    """``model.icr_pool_table``: per-j offsets of the log pooling weight, 0 = the schedule's fits; a huge offset at one
    j gives every unit the fit of the pooled statistics there (one map for all units) and leaves the other j alone."""
    m, ref, reg, tgt = _tabled("icr_pool_table")
    assert m.pool_table.shape == (ModelConfig.flavour("debug").k_max + 1,)
    with torch.no_grad():
        m.pool_table[3] = 30.0
        maps, base = m.maps(reg, tgt), ref.maps(reg, tgt)
    assert not torch.allclose(base[:, 3, 0], base[:, 3, 1])                        # the units' own fits differ
    torch.testing.assert_close(maps[:, 3, 0], maps[:, 3, 1], rtol=1e-6, atol=1e-9)  # j = 3: one pooled map
    torch.testing.assert_close(maps[:, 3, 0], maps[:, 3, 2], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(maps[:, [0, 1, 2, 4]], base[:, [0, 1, 2, 4]])        # other j: unchanged


def test_block_causal():
    """Pair p reads the targets of pairs < p and the regressors of pairs <= p only."""
    reg, tgt = _data(2, 6, 2, 3, 2, 2, seed=2)
    m, q = _icr(), 3
    with torch.no_grad():
        ref = m(reg, tgt)
        reg2, tgt2 = reg.clone(), tgt.clone()
        tgt2[:, q:] = 3.0 * tgt2[:, q:] + 1.0
        reg2[:, q + 1:] = 2.0 * reg2[:, q + 1:] - 0.5
        out = m(reg2, tgt2)
    torch.testing.assert_close(out[:, : q + 1], ref[:, : q + 1], rtol=0, atol=0)
    assert (out[:, q + 1:] - ref[:, q + 1:]).abs().amin((-1, -2, -3)).min() > 1e-6    # later pairs do change


@pytest.mark.parametrize("a,b", [(3.0, 0.5), (0.2 - 1.1j, 4.0 + 2.0j)])
def test_scale_equivariance_of_one_unit(a, b):
    """Scaling unit u's regressors by a and targets by b (all pairs) scales its fit by b: the ridge is relative to
    the unit's own power. With pooling off the other units are untouched; with pooling on, all units scaled alike."""
    reg, tgt = _data(1, 5, 3, 4, 3, 2, seed=3)
    m = _icr(pool=1e-30)
    with torch.no_grad():
        ref = m(reg, tgt)
        reg2, tgt2 = reg.clone(), tgt.clone()
        reg2[:, :, 1] *= a
        tgt2[:, :, 1] *= b
        out = m(reg2, tgt2)
        torch.testing.assert_close(out[:, :, 1], b * ref[:, :, 1], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(out[:, :, [0, 2]], ref[:, :, [0, 2]], rtol=1e-9, atol=1e-12)
        pooled = _icr(pool=0.5)
        torch.testing.assert_close(pooled(a * reg, b * tgt), b * pooled(reg, tgt), rtol=1e-9, atol=1e-12)


def test_pooling_weight_to_zero_gives_per_unit_fits():
    reg, tgt = _data(2, 5, 4, 3, 2, 1, seed=4)
    with torch.no_grad():
        alone = torch.cat([_icr()(reg[:, :, u: u + 1], tgt[:, :, u: u + 1]) for u in range(4)], 2)
        apart = _icr(pool=1e-30)(reg, tgt)
        pooled = _icr(pool=1.0)(reg, tgt)
    torch.testing.assert_close(apart, alone, rtol=1e-9, atol=1e-12)
    assert (pooled[:, 1:] - alone[:, 1:]).abs().max() > 1e-3                        # pooling is a real change


def test_noiseless_linear_map_is_recovered():
    """Targets t = A x of one map per unit: with a tiny ridge the pairs after enough demonstrations recover it."""
    reg, _ = _data(2, 6, 2, 3, 4, 2, seed=5)
    g = torch.Generator().manual_seed(6)
    a = torch.view_as_complex(torch.randn(2, 1, 2, 2, 4, 2, generator=g, dtype=torch.float64))   # [B, 1, U, O, F]
    tgt = torch.einsum("bquof,bpusf->bpuso", a, reg)
    with torch.no_grad():
        out = _icr(n0=1e-9, slope=0.0, pool=1e-30)(reg, tgt)
    err = (out - tgt).abs().pow(2).sum((2, 3, 4)) / tgt.abs().pow(2).sum((2, 3, 4))         # [B, P]
    assert err[:, 2:].max() < 1e-6                                   # >= 6 samples for 4 unknowns per output
    assert err[:, 1].min() > 1e-3                                    # 3 samples cannot pin 4 unknowns


def test_prefix_helpers_against_loops():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    ref = torch.stack([a[:, :p].sum(1) for p in range(5)], 1)
    torch.testing.assert_close(exclusive_cumsum(a), ref)
    reg, tgt = _data(1, 4, 1, 3, 2, 2, seed=8)
    gram, cross = prefix_stats(reg, tgt)
    p = 3
    x, t = reg[0, :p, 0].reshape(-1, 2), tgt[0, :p, 0].reshape(-1, 2)
    torch.testing.assert_close(gram[0, p, 0], x.T @ x.conj())
    torch.testing.assert_close(cross[0, p, 0], t.T @ x.conj())


def test_maps_are_what_forward_applies_and_recover_a_noiseless_map():
    reg, _ = _data(2, 6, 1, 3, 4, 2, seed=9)
    g = torch.Generator().manual_seed(10)
    a = torch.view_as_complex(torch.randn(2, 1, 1, 2, 4, 2, generator=g, dtype=torch.float64))   # [B, 1, U, O, F]
    tgt = torch.einsum("bquof,bpusf->bpuso", a, reg)
    icr = _icr(n0=1e-9, slope=0.0)
    with torch.no_grad():
        maps = icr.maps(reg, tgt)                                        # [B, P, U, O, F]
        torch.testing.assert_close(torch.einsum("bpuof,bpusf->bpuso", maps, reg), icr(reg, tgt))
    assert torch.equal(maps[:, 0], torch.zeros_like(maps[:, 0]))
    torch.testing.assert_close(maps[:, 2:], a.expand(2, 4, 1, 2, 4), rtol=0, atol=1e-6)


def test_residual_power_is_the_unbiased_least_squares_noise_estimate():
    """Against a loop over the earlier pairs' residuals; on t = A x + noise of variance v, pooled over many
    pairs, the estimate is unbiased (the n - F degrees of freedom)."""
    reg, noise = _data(64, 5, 1, 4, 3, 2, seed=11)
    g = torch.Generator().manual_seed(12)
    a = torch.view_as_complex(torch.randn(64, 1, 1, 2, 3, 2, generator=g, dtype=torch.float64))
    v = 0.3
    tgt = torch.einsum("bquof,bpusf->bpuso", a, reg) + math.sqrt(v / 2.0) * noise   # _data: E|n|^2 = 2
    with torch.no_grad():
        maps = _icr(n0=1e-9, slope=0.0).maps(reg, tgt)
    pw = prefix_residual_power(reg, tgt, maps)                              # [B, P, U]
    for p in (1, 3, 4):
        x, t = reg[:, :p, 0].flatten(1, 2), tgt[:, :p, 0].flatten(1, 2)     # [B, n, F], [B, n, O]
        res = (t - x @ maps[:, p, 0].mT).abs().pow(2).sum((1, 2)) / (2 * max(p * 4 - 3, 1))
        torch.testing.assert_close(pw[:, p, 0], res)
    assert torch.equal(pw[:, 0], torch.zeros_like(pw[:, 0]))
    assert abs(float(pw[:, 4].mean()) / v - 1.0) < 0.15, float(pw[:, 4].mean())


def test_residual_ridge_starts_as_the_plain_fit_and_scales_each_episodes_ridge_by_its_own_residual():
    """w = 0 gives the plain fit; rho is the earlier pairs' residual power over their target power (a loop); with w_j
    set, episode b's pair p is the plain fit at ridge n0 rho_b^w_j; a well-fitting episode has a small rho."""
    reg, noise = _data(2, 6, 2, 3, 2, 1, seed=13)
    g = torch.Generator().manual_seed(14)
    a = torch.view_as_complex(torch.randn(2, 1, 2, 1, 2, 2, generator=g, dtype=torch.float64))
    tgt = torch.einsum("bquof,bpusf->bpuso", a, reg) + torch.tensor([0.01, 3.0])[:, None, None, None, None] * noise
    cfg = ModelConfig.flavour("debug")
    m, plain = InContextRidge(cfg, residual=True), InContextRidge(cfg)
    with torch.no_grad():
        torch.testing.assert_close(m(reg, tgt), plain(reg, tgt))
        maps = plain.maps(reg, tgt)
        rho = relative_residual(reg, tgt, maps)                                      # [B, P]
        for p in (1, 4):
            fitted = torch.einsum("buof,bqusf->bquso", maps[:, p], reg[:, :p])
            res = (tgt[:, :p] - fitted).abs().pow(2).sum((1, 3, 4)) / max(p * 3 - 2, 1)   # [B, U]
            power = tgt[:, :p].abs().pow(2).sum((1, 3, 4)) / (p * 3)
            torch.testing.assert_close(rho[:, p], res.mean(1) / power.mean(1))
        m.resid_w.fill_(1.5)
        out = m(reg, tgt)
        for b in range(2):
            for p in (2, 5):
                ref = InContextRidge(cfg)
                ref.log_n0.add_(1.5 * math.log(float(rho[b, p].clamp_min(cfg.icr_residual_floor))))
                torch.testing.assert_close(out[b, p], ref(reg[b:b + 1], tgt[b:b + 1])[0, p])
    assert float(rho[0, 5]) < 1e-2 < 0.5 < float(rho[1, 5])                    # the noiseless episode fits well
