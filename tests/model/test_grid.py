"""ce / cp / pf (icwm/model/grid.py, grid_icr.py): the first guesses, the token-generated filters (``FilterTaps``:
exact classical structures, linear and so scale-equivariant, zero at start) and the in-context fit (``GridFit``:
the ridge regression of each task's regressors against a float64 loop, recovery of exact linear maps, block
causality, scale equivariance, absent at k = 0)."""
from __future__ import annotations

import math

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.model.grid import KEYS, FilterTaps
from icwm.model.grid_icr import GridFit
from icwm.wireless import prediction
from icwm.wireless.duplex import from_delay_beam, to_delay_beam
from model_batches import random_batch
from test_icr import _reference

N0, SLOPE, POOL = 0.5, 0.7, 0.3


def _cn(*shape: int, g: torch.Generator, dtype=torch.complex64) -> torch.Tensor:
    return torch.view_as_complex(torch.randn(*shape, 2, generator=g, dtype=torch.float64)).to(dtype)


# ---- FilterTaps ------------------------------------------------------------------------------------------------------
def _set(f: FilterTaps, c: torch.Tensor) -> None:
    """Make the filter emit the complex coefficients ``c [n_out, n_taps]`` whatever the token."""
    with torch.no_grad():
        f.coef.weight.zero_()
        f.coef.bias.copy_(torch.view_as_real(c).reshape(-1))


def test_ce_filter_is_a_pilot_window_interpolator():
    cfg = ModelConfig.flavour("debug")
    f, half, sp = FilterTaps(cfg, "ce"), cfg.filter_half_width, cfg.pilot_spacing
    g = torch.Generator().manual_seed(0)
    b, p, n_pil, n = 2, 3, 6, 5
    x = _cn(b, p, 1, n_pil, n, g=g)
    w = torch.arange(sp) / sp
    c = torch.zeros(sp, 2 * half + 1, dtype=torch.complex64)
    c[:, half], c[:, half + 1] = 1 - w, w                                   # linear interpolation to the next pilot
    _set(f, c)
    shape = (b, p, 1, n_pil * sp - 2, n)
    out = f(torch.randn(b, p, n_pil, cfg.d_model, generator=g), x, shape, sp)
    assert out.shape == shape
    nxt = torch.cat((x[:, :, 0, 1:], torch.zeros_like(x[:, :, 0, :1])), 2)  # zero padded at the edge
    ref = x[:, :, 0, :, None] * (1 - w)[:, None] + nxt[:, :, :, None] * w[:, None]   # [B, P, pil, sp, N]
    torch.testing.assert_close(out[:, :, 0], ref.reshape(b, p, -1, n)[:, :, : shape[3]])


def test_cp_filter_repeat_last_and_short_history():
    cfg = ModelConfig.flavour("debug")
    f = FilterTaps(cfg, "cp")
    c = torch.zeros(cfg.max_time, cfg.max_time, dtype=torch.complex64)
    c[:, -1] = 1.0                                                          # every future slot = the last sample
    _set(f, c)
    g = torch.Generator().manual_seed(1)
    for t_x in (cfg.max_time, 5):                                           # a shorter history is front padded
        x = _cn(2, 3, t_x, 10, 4, g=g)
        out = f(torch.randn(2, 3, 3, cfg.d_model, generator=g), x, (2, 3, 4, 10, 4), cfg.sc_group)
        assert out.shape == (2, 3, 4, 10, 4)
        torch.testing.assert_close(out, x[:, :, -1:].expand(-1, -1, 4, -1, -1))


@pytest.mark.parametrize("task", ["ce", "cp"])
def test_filters_start_at_zero_and_are_scale_equivariant(task: str):
    """Zero at initialisation (the head starts as without it); linear in the input grid for fixed tokens."""
    cfg = ModelConfig.flavour("debug")
    g = torch.Generator().manual_seed(2)
    if task == "ce":
        x, shape, group = _cn(2, 3, 1, 6, 5, g=g), (2, 3, 1, 23, 5), cfg.pilot_spacing
    else:
        x, shape, group = _cn(2, 3, cfg.max_time, 10, 3, g=g), (2, 3, 4, 10, 3), cfg.sc_group
    hx = torch.randn(2, 3, -(-shape[3] // group), cfg.d_model, generator=g)
    f = FilterTaps(cfg, task)
    assert f(hx, x, shape, group).abs().max() == 0
    with torch.no_grad():
        f.coef.weight.normal_(generator=g)
        f.coef.bias.normal_(generator=g)
        out = f(hx, x, shape, group)
        a = 0.3 - 2.0j
        torch.testing.assert_close(f(hx, a * x, shape, group), a * out, rtol=1e-5, atol=1e-5)
    assert out.abs().min() > 0


# ---- GridFit: reference regressors built by loops --------------------------------------------------------------------
def _fit(task: str, cfg: ModelConfig) -> GridFit:
    m = GridFit(cfg, task)
    with torch.no_grad():
        m.icr.log_n0.fill_(math.log(N0))
        m.icr.slope.fill_(SLOPE)
        m.icr.log_pool.fill_(math.log(POOL))
    return m


def _grids(task: str, cfg: ModelConfig, b: int, p: int, g: torch.Generator) -> tuple:
    """(input grid, label grid, prediction grid), complex128, with a non-multiple subcarrier count (ce)."""
    if task == "ce":
        x, sy = _cn(b, p, 1, 5, 6, g=g, dtype=torch.complex128), (b, p, 1, 5 * cfg.pilot_spacing - 1, 6)
    elif task == "cp":
        x, sy = _cn(b, p, 6, 5, 4, g=g, dtype=torch.complex128), (b, p, 3, 5, 4)   # history shorter than max_time
    else:
        x, sy = _cn(b, p, 2, 6, 4, g=g, dtype=torch.complex128), (b, p, 2, 6, 4)
    return x, _cn(*sy, g=g, dtype=torch.complex128), 0.5 * _cn(*sy, g=g, dtype=torch.complex128)


def _ce_reference(cfg, x, y, bb):
    """Units = pilot groups, samples = antennas, regressors = [pilots g-h..g+h (zero outside), b of the group]."""
    n_b, n_p, _, n_pil, n = x.shape
    s_y, sp, h = y.shape[3], cfg.pilot_spacing, cfg.icr_half_width
    reg = torch.zeros(n_b, n_p, n_pil, n, 2 * h + 1 + sp, dtype=torch.complex128)
    tgt = torch.zeros(n_b, n_p, n_pil, n, sp, dtype=torch.complex128)
    for u in range(n_pil):
        for t in range(2 * h + 1):
            if 0 <= u - h + t < n_pil:
                reg[:, :, u, :, t] = x[:, :, 0, u - h + t]
        for j in range(sp):
            if u * sp + j < s_y:
                reg[:, :, u, :, 2 * h + 1 + j] = bb[:, :, 0, u * sp + j]
                tgt[:, :, u, :, j] = y[:, :, 0, u * sp + j] - bb[:, :, 0, u * sp + j]
    fit = torch.from_numpy(_reference(reg, tgt, N0, SLOPE, POOL))
    out = torch.zeros_like(y)
    for u in range(n_pil):
        for j in range(sp):
            if u * sp + j < s_y:
                out[:, :, 0, u * sp + j] = fit[:, :, u, :, j]
    return out


def _cp_reference(cfg, x, y, bb):
    """Units = DFT beams over antennas, samples = subcarriers, regressors = [history (front padded), b]."""
    n_b, n_p, t_x, s, n = x.shape
    dft = torch.fft.fft(torch.eye(n, dtype=torch.complex128), norm="ortho")        # beam = dft @ antennas
    xb, yb, bbb = (torch.einsum("kn,bptsn->bpkst", dft, v) for v in (x, y, bb))    # [B, P, beam, S, T]
    hist = torch.zeros(n_b, n_p, n, s, cfg.max_time, dtype=torch.complex128)
    hist[..., cfg.max_time - t_x:] = xb
    fit = torch.from_numpy(_reference(torch.cat((hist, bbb), -1), yb - bbb, N0, SLOPE, POOL))
    return torch.einsum("kn,bpkst->bptsn", dft.conj(), fit)


def _pf_reference(cfg, x, y, bb):
    """Units = (delay, beam), samples = time slots, regressors = [UL at delays d-w..d+w (circular), b]."""
    xd, yd, bd = (to_delay_beam(v) for v in (x, y, bb))                            # [B, P, T, D, N]
    n_b, n_p, t, d, n = xd.shape
    w = cfg.icr_band_half_width
    reg = torch.zeros(n_b, n_p, d, n, t, 2 * w + 2, dtype=torch.complex128)
    for di in range(d):
        for j, s in enumerate(range(-w, w + 1)):
            reg[:, :, di, :, :, j] = xd[:, :, :, (di + s) % d].permute(0, 1, 3, 2)
        reg[:, :, di, :, :, -1] = bd[:, :, :, di].permute(0, 1, 3, 2)
    tgt = (yd - bd).permute(0, 1, 3, 4, 2)[..., None]                              # [B, P, D, N, T, 1]
    fit = torch.from_numpy(_reference(reg.flatten(2, 3), tgt.flatten(2, 3), N0, SLOPE, POOL))
    return from_delay_beam(fit[..., 0].unflatten(2, (d, n)).permute(0, 1, 4, 2, 3))


REFERENCE = {"ce": _ce_reference, "cp": _cp_reference, "pf": _pf_reference}


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_grid_fit_matches_the_ridge_of_its_regressors(task: str):
    cfg = ModelConfig.flavour("debug", icr_half_width=2)
    g = torch.Generator().manual_seed(3)
    x, y, bb = _grids(task, cfg, 2, 4, g)
    with torch.no_grad():
        out = _fit(task, cfg)(x, y, bb)
    assert out.shape == y.shape
    torch.testing.assert_close(out, REFERENCE[task](cfg, x, y, bb), rtol=1e-6, atol=1e-6)
    assert out[:, 0].abs().max() == 0 and out[:, 1:].abs().min() > 0


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_grid_fit_is_block_causal_and_scale_equivariant(task: str):
    """Pair q's correction ignores the labels of pairs >= q and everything of pairs > q; scaling x, y, b by one
    complex factor scales the correction by it."""
    cfg = ModelConfig.flavour("debug", icr_half_width=2)
    g = torch.Generator().manual_seed(4)
    x, y, bb = _grids(task, cfg, 1, 5, g)
    m, q = _fit(task, cfg), 2
    with torch.no_grad():
        ref = m(x, y, bb)
        x2, y2, b2 = x.clone(), y.clone(), bb.clone()
        y2[:, q:] = 2.0 * y2[:, q:] + 1.0
        x2[:, q + 1:] *= 3.0
        b2[:, q + 1:] -= 0.5
        out = m(x2, y2, b2)
        a = 1.5 + 0.5j
        torch.testing.assert_close(m(a * x, a * y, a * bb), a * ref, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out[:, : q + 1], ref[:, : q + 1], rtol=0, atol=0)
    assert (out[:, q + 1] - ref[:, q + 1]).abs().max() > 1e-3


def test_pf_fit_recovers_an_exact_per_bin_band_map():
    """One path per (delay, beam) bin: DL = phase(bin) x UL there, random small-scale gains per pair. With the earlier
    pairs alone (b = 0, tiny ridge, no pooling) the query's DL band is recovered; the map is not the identity."""
    cfg = ModelConfig.flavour("debug")
    g = torch.Generator().manual_seed(5)
    b, p, d, n = 3, 6, 8, 4
    phase = torch.exp(2j * math.pi * torch.rand(b, 1, 1, d, n, generator=g, dtype=torch.float64))
    gains = _cn(b, p, 1, d, n, g=g, dtype=torch.complex128)
    ul, dl = from_delay_beam(gains), from_delay_beam(phase * gains)
    m = GridFit(cfg, "pf")
    with torch.no_grad():
        m.icr.log_n0.fill_(math.log(1e-9))
        m.icr.log_pool.fill_(math.log(1e-30))
        out = m(ul, dl, torch.zeros_like(dl))
    rel = lambda a: float((a[:, -1] - dl[:, -1]).abs().pow(2).sum() / dl[:, -1].abs().pow(2).sum())  # noqa: E731
    assert rel(out) < 1e-6 and rel(ul) > 0.5


def test_ce_fit_recovers_a_per_group_interpolator():
    """Labels from a fixed linear filter of each group's pilot window (the same for all antennas): the demonstrations'
    antennas pin it down, the query is recovered."""
    cfg = ModelConfig.flavour("debug", icr_half_width=1)
    g = torch.Generator().manual_seed(6)
    b, p, n_pil, n, sp = 2, 4, 5, 8, cfg.pilot_spacing
    x = _cn(b, p, 1, n_pil, n, g=g, dtype=torch.complex128)
    c = _cn(b, 1, n_pil, sp, 3, g=g, dtype=torch.complex128)                    # [B, 1, group, sc, tap]
    xp = torch.nn.functional.pad(x[:, :, 0], (0, 0, 1, 1))                         # [B, P, pil + 2, N]
    win = torch.stack([xp[:, :, t: t + n_pil] for t in range(3)], -1)              # [B, P, pil, N, 3]
    y = torch.einsum("bqgot,bpgnt->bpgon", c, win).reshape(b, p, 1, n_pil * sp, n)
    m = GridFit(cfg, "ce")
    with torch.no_grad():
        m.icr.log_n0.fill_(math.log(1e-9))
        m.icr.log_pool.fill_(math.log(1e-30))
        out = m(x, y, torch.zeros_like(y))
    err = (out - y).abs().pow(2).sum((2, 3, 4)) / y.abs().pow(2).sum((2, 3, 4))     # [B, P]
    assert err[:, 0].min() > 0.99 and err[:, 1:].max() < 1e-6


# ---- the head: first guess + correction + filter + fit ---------------------------------------------------------------
def _anchor(task: str, batch: dict) -> torch.Tensor:
    kx, ky = KEYS[task]
    x, y = batch[kx], batch[ky]
    if task == "ce":
        return x.repeat_interleave(4, dim=3)[:, :, :, : y.shape[3]]               # nearest pilot
    if task == "cp":
        return x[:, :, -1:].expand_as(y)                                           # last sample
    return x                                                                       # the UL band


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_silenced_head_is_the_first_guess(task: str):
    model = build_model(ModelConfig.flavour("debug", icr=False)).eval()
    assert model.heads[task].fit is None
    with torch.no_grad():
        model.heads[task].out.weight.zero_()
        model.heads[task].out.bias.zero_()
        batch = random_batch(task, k=2, M=10)
        out = model(batch)[KEYS[task][1]]
    torch.testing.assert_close(out, _anchor(task, batch))


def test_cp_ar_first_guess_is_the_historys_own_ar_prediction():
    """``cp_first_guess="ar"``: the silenced head is ``prediction.ar_predict`` of each pair's own history (repeat-last
    where no AR predictor fits); on a single Doppler tone it predicts the future where repeat-last cannot."""
    model = build_model(ModelConfig.flavour("debug", icr=False, cp_first_guess="ar")).eval()
    with torch.no_grad():
        model.heads["cp"].out.weight.zero_()
        model.heads["cp"].out.bias.zero_()
        batch = random_batch("cp", k=2, M=10)
        torch.testing.assert_close(model(batch)["h_fut"], prediction.ar_predict(batch["h_hist"], 4))
        short = {**batch, "h_hist": batch["h_hist"][:, :, -1:]}
        torch.testing.assert_close(model(short)["h_fut"], _anchor("cp", short))
        t = torch.arange(20, dtype=torch.float64)
        gain = _cn(2, 3, 1, 6, 4, g=torch.Generator().manual_seed(0), dtype=torch.complex128)
        tone = (gain * torch.exp(2j * math.pi * 0.07 * t)[:, None, None]).to(torch.complex64)  # [B, P, 20, sc, ant]
        hist, fut = tone[:, :, :16], tone[:, :, 16:]
        emb = model.embedders["cp"]
        nmse = lambda p: ((p - fut).abs().pow(2).sum() / fut.abs().pow(2).sum()).item()   # noqa: E731
        ar = emb({"task": "cp", "k": 2, "h_hist": hist, "h_fut": torch.zeros_like(fut)})[2].anchor
    assert nmse(ar) < 1e-6 and nmse(hist[:, :, -1:].expand_as(fut)) > 0.1


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_fit_adds_to_the_head_from_the_second_pair_on(task: str):
    """The same weights with and without ``cfg.icr``: equal at pair 0 (and at k = 0), different after."""
    torch.manual_seed(0)
    with_fit = build_model(ModelConfig.flavour("debug")).eval()
    without = build_model(ModelConfig.flavour("debug", icr=False)).eval()
    missing = without.load_state_dict(with_fit.state_dict(), strict=False)
    assert not missing.missing_keys and missing.unexpected_keys
    assert all(".icr." in key for key in missing.unexpected_keys)
    batch, key = random_batch(task, k=3), KEYS[task][1]
    with torch.no_grad():
        a, b = with_fit(batch)[key], without(batch)[key]
        k0 = {k: (v[:, :1] if torch.is_tensor(v) else v) for k, v in batch.items()}
        torch.testing.assert_close(with_fit({**k0, "k": 0})[key], without({**k0, "k": 0})[key])
    torch.testing.assert_close(a[:, 0], b[:, 0])
    assert (a[:, 1:] - b[:, 1:]).abs().amax((-1, -2, -3)).min() > 1e-4


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_fit_drop_runs_a_share_of_training_episodes_without_the_fit(task: str):
    """``model.grid_fit_drop``: in training each episode's head runs without its fit with that probability (its
    prediction is then the same weights' without ``cfg.icr``, at every pair); in evaluation never."""
    torch.manual_seed(0)
    drop = build_model(ModelConfig.flavour("debug", grid_fit_drop=0.5, dropout=0.0))
    without = build_model(ModelConfig.flavour("debug", icr=False, dropout=0.0))
    without.load_state_dict(drop.state_dict(), strict=False)
    batch, key = random_batch(task, k=3, B=64), KEYS[task][1]
    with torch.no_grad():
        ref, bare = drop.eval()(batch)[key], without.eval()(batch)[key]
        torch.manual_seed(1)
        out = drop.train()(batch)[key]
    same = lambda a, b: (a - b).abs().flatten(1).amax(1) < 1e-5               # noqa: E731  per episode
    dropped, kept = same(out, bare), same(out, ref)
    assert torch.equal(dropped, ~kept) and 16 <= int(dropped.sum()) <= 48    # each episode one or the other
    with pytest.raises(ValueError, match="grid_fit_drop"):
        ModelConfig.flavour("debug", grid_fit_drop=1.0)


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_gate_table_scales_the_learned_parts_per_number_of_earlier_pairs(task: str):
    """``model.grid_gate_table``: a trained table [k_max + 1] starting at 1 (the head then predicts as without it);
    gate[0] = 0 leaves pair 0 (no earlier pair) at the first guess alone (cp: the history's AR prediction) and changes
    no other pair's prediction but through the fit that reads it."""
    torch.manual_seed(0)
    cfg = ModelConfig.flavour("debug", grid_gate_table=True, icr=False, dropout=0.0)
    gated = build_model(cfg).eval()
    plain = build_model(ModelConfig.flavour("debug", icr=False, dropout=0.0)).eval()
    plain.load_state_dict(gated.state_dict(), strict=False)
    head = gated.heads[task]
    assert head.gate.shape == (cfg.k_max + 1,) and torch.equal(head.gate, torch.ones(cfg.k_max + 1))
    batch, key = random_batch(task, k=3, B=4), KEYS[task][1]
    with torch.no_grad():
        ref = plain(batch)[key]
        assert torch.allclose(gated(batch)[key], ref, atol=1e-6)
        head.gate[0] = 0.0
        out = gated(batch)[key]
        _, _, ctx = gated.embedders[task](batch)
    assert torch.allclose(out[:, 0], ctx.anchor[:, 0].to(out.dtype), atol=1e-6)
    assert torch.allclose(out[:, 1:], ref[:, 1:], atol=1e-6) and not torch.allclose(out[:, 0], ref[:, 0], atol=1e-4)
    assert "gate" not in dict(plain.heads[task].named_parameters())


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_k0_first_guess_gives_pair_0_the_first_guess_and_leaves_the_others(task: str):
    """``model.grid_k0_first_guess``: in eval mode the named task's pair 0 (no earlier pairs) is the first guess
    exactly (cp: the history's AR prediction, the latent form's blind baseline); every later pair, fit included, is as
    without it; the other grid tasks are untouched; in training mode nothing changes (the learned parts are scored at
    pair 0 too); a non-grid task is refused."""
    torch.manual_seed(0)
    first = build_model(ModelConfig.flavour("debug", grid_k0_first_guess=(task,), dropout=0.0)).eval()
    plain = build_model(ModelConfig.flavour("debug", dropout=0.0)).eval()
    plain.load_state_dict(first.state_dict())
    with torch.no_grad():
        for t in ("ce", "cp", "pf"):
            batch, key = random_batch(t, k=3, B=4), KEYS[t][1]
            out, ref = first(batch)[key], plain(batch)[key]
            _, _, ctx = first.embedders[t](batch)
            assert torch.allclose(out[:, 1:], ref[:, 1:], atol=1e-6)
            assert torch.allclose(out[:, 0], ctx.anchor[:, 0].to(out.dtype), atol=1e-6) == (t == task)
            assert torch.allclose(out[:, 0], ref[:, 0], atol=1e-6) == (t != task)
    first.train(), plain.train()
    batch, key = random_batch(task, k=3, B=4), KEYS[task][1]
    torch.manual_seed(1)
    out = first(batch)[key]
    torch.manual_seed(1)
    assert torch.allclose(out, plain(batch)[key], atol=1e-6)
    with pytest.raises(ValueError, match="grid_k0_first_guess"):
        ModelConfig.flavour("debug", grid_k0_first_guess=("det",))
