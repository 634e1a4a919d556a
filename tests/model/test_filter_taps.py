"""FilterTaps: the context-generated linear filters of the ce / cp heads apply the classical structures exactly,
and with demo_fit they are the Bayesian ridge fit to the earlier pairs."""
import math

import torch

from icwm.model import ModelConfig
from icwm.model.heads import FILTER_HALF_WIDTH, FilterTaps


def _set(f: FilterTaps, c: torch.Tensor) -> None:
    """Make the filter emit the complex coefficients ``c [n_out, n_taps]`` whatever the token."""
    with torch.no_grad():
        f.coef.weight.zero_()
        f.coef.bias.copy_(torch.view_as_real(c).reshape(-1))


def test_ce_filter_is_a_pilot_window_interpolator():
    cfg = ModelConfig.flavour("debug", demo_fit=False)
    f = FilterTaps(cfg, "ce")
    g = torch.Generator().manual_seed(0)
    b, p, n_pil, n = 2, 3, 6, 5
    x = torch.randn(b, p, 1, n_pil, n, 2, generator=g)
    x = torch.view_as_complex(x)
    c = torch.zeros(cfg.pilot_spacing, 2 * FILTER_HALF_WIDTH + 1, dtype=torch.complex64)
    c[:, FILTER_HALF_WIDTH] = 1 - torch.arange(cfg.pilot_spacing) / cfg.pilot_spacing      # linear interpolation
    c[:, FILTER_HALF_WIDTH + 1] = torch.arange(cfg.pilot_spacing) / cfg.pilot_spacing
    _set(f, c)
    out = f(torch.randn(b, p, n_pil, cfg.d_model), x, (b, p, 1, n_pil * cfg.pilot_spacing - 2, n), cfg.pilot_spacing)
    assert out.shape == (b, p, 1, n_pil * cfg.pilot_spacing - 2, n)
    nxt = torch.cat((x[:, :, 0, 1:], torch.zeros_like(x[:, :, 0, :1])), 2)               # zero padded at the edge
    w = torch.arange(cfg.pilot_spacing) / cfg.pilot_spacing
    ref = x[:, :, 0, :, None] * (1 - w)[:, None] + nxt[:, :, :, None] * w[:, None]       # [B, P, pil, sp, N]
    ref = ref.reshape(b, p, -1, n)[:, :, : out.shape[3]]
    torch.testing.assert_close(out[:, :, 0], ref)


def test_cp_filter_repeat_last_and_short_history():
    cfg = ModelConfig.flavour("debug", demo_fit=False)
    f = FilterTaps(cfg, "cp")
    c = torch.zeros(cfg.max_time, cfg.max_time, dtype=torch.complex64)
    c[:, -1] = 1.0                                                # every future slot = the last history sample
    _set(f, c)
    g = torch.Generator().manual_seed(1)
    for t_x in (cfg.max_time, 5):                                 # a shorter history is front padded
        x = torch.view_as_complex(torch.randn(2, 3, t_x, 10, 4, 2, generator=g))
        out = f(torch.randn(2, 3, 3, cfg.d_model), x, (2, 3, 4, 10, 4), cfg.sc_group)
        assert out.shape == (2, 3, 4, 10, 4)
        torch.testing.assert_close(out, x[:, :, -1:].expand(-1, -1, 4, -1, -1))


def test_filters_start_at_zero():
    cfg = ModelConfig.flavour("debug", demo_fit=False)
    x = torch.view_as_complex(torch.randn(1, 2, 16, 8, 3, 2))
    assert FilterTaps(cfg, "cp")(torch.randn(1, 2, 2, cfg.d_model), x, (1, 2, 4, 8, 3), cfg.sc_group).abs().max() == 0


def _grids(task: str, cfg: ModelConfig, b: int, p: int, g: torch.Generator) -> tuple[torch.Tensor, tuple]:
    """A random input grid and the output shape of ``task``."""
    cn = lambda *s: torch.view_as_complex(torch.randn(*s, 2, generator=g))  # noqa: E731
    if task == "ce":
        return cn(b, p, 1, 6, 5), (b, p, 1, 6 * cfg.pilot_spacing - 1, 5)
    return cn(b, p, cfg.max_time, 10, 3), (b, p, 4, 10, 3)


def _fit_filter(task: str) -> tuple[FilterTaps, ModelConfig]:
    cfg = ModelConfig.flavour("debug", demo_fit=True)
    f = FilterTaps(cfg, task)
    with torch.no_grad():                            # a non-zero trunk filter, so the prior matters
        f.coef.bias.normal_(generator=torch.Generator().manual_seed(5))
        f.log_pool.fill_(0.3)
        f.n0_slope.fill_(0.7)                        # the ridge of pair q: exp(log_n0 + 0.7 / max(q, 1)) samples
    return f, cfg


def _group(task: str, cfg: ModelConfig) -> int:
    return cfg.pilot_spacing if task == "ce" else cfg.sc_group


def _ridge(t_list: list, r_list: list, q: int, u: int, lam: float, w: float) -> torch.Tensor:
    """Reference D = (R_u + w mean_v R_v)(A_u + w mean_v A_v + lam I)^-1 over pairs < q (loops, float64)."""
    n_u, n_t = len(t_list[0]), t_list[0][0].shape[-1]
    a = lambda v: sum((t_list[j][v].T @ t_list[j][v].conj() for j in range(q)), torch.zeros(n_t, n_t, dtype=torch.complex128))  # noqa
    n_o = r_list[0][0].shape[-1]
    r = lambda v: sum((r_list[j][v].T @ t_list[j][v].conj() for j in range(q)), torch.zeros(n_o, n_t, dtype=torch.complex128))  # noqa
    am = sum(a(v) for v in range(n_u)) / n_u
    rm = sum(r(v) for v in range(n_u)) / n_u
    return (r(u) + w * rm) @ torch.linalg.inv(a(u) + w * am + lam * torch.eye(n_t, dtype=torch.complex128))


def test_demo_fit_matches_the_closed_form_ridge():
    """Pair q adds D [taps, b] (b = base + C0 taps, the head's prediction without the fit), D the ridge fit of the
    earlier pairs' residuals (label - b) on their [taps, b]: per subcarrier group over antennas (ce), per DFT beam
    over subcarriers (cp)."""
    g = torch.Generator().manual_seed(2)
    for task in ("ce", "cp"):
        f, cfg = _fit_filter(task)
        b, p, gs = 1, 4, _group(task, cfg)
        x, shape = _grids(task, cfg, b, p, g)
        y = torch.view_as_complex(torch.randn(*shape, 2, generator=g))
        base = 0.3 * torch.view_as_complex(torch.randn(*shape, 2, generator=g))
        n_g = -(-shape[3] // gs)
        hx = torch.randn(b, p, n_g, cfg.d_model, generator=g)
        with torch.no_grad():
            out = f(hx, x, shape, gs, y, base)
            prior = FilterTaps(ModelConfig.flavour("debug", demo_fit=False), task)
            prior.coef.load_state_dict(f.coef.state_dict())
            out0 = prior(hx, x, shape, gs)                                          # C0 taps
        w = float(torch.exp(f.log_pool.detach()))
        n0 = lambda q: math.exp(float(f.log_n0) + float(f.n0_slope) / max(q, 1))  # noqa: E731
        pred = (base + out0).to(torch.complex128)
        resid = y.to(torch.complex128)[0] - pred[0]                                   # [P, Ty, Sy, N]
        xx = x.to(torch.complex128)[0]
        if task == "ce":
            h = cfg.fit_half_width                                                   # the fit's own wide window
            win = torch.zeros(p, n_g, xx.shape[-1], 2 * h + 1, dtype=torch.complex128)
            for t in range(2 * h + 1):
                for u in range(n_g):
                    if 0 <= u - h + t < xx.shape[2]:
                        win[:, u, :, t] = xx[:, 0, u - h + t]
            taps = torch.cat((win, f.to_samples(pred, n_g, gs)[0]), -1)
            rs = f.to_samples(resid[None], n_g, gs)[0]                                # [P, G, N, O]
            ref = torch.zeros(1, p, n_g, taps.shape[2], f.n_out, dtype=torch.complex128)
            for q in range(p):
                for u in range(n_g):
                    lam = n0(q) * taps[q, u].abs().pow(2).mean()
                    ref[0, q, u] = taps[q, u] @ _ridge(taps, rs, q, u, lam, w).T
            ref = f.from_samples(ref, (1,) + shape[1:], gs)[0]
        else:
            beam = lambda t: torch.fft.fft(t, dim=-1, norm="ortho").permute(0, 3, 2, 1)  # noqa: E731 [P, N, S, T]
            hb = torch.cat((beam(xx), beam(pred[0])), -1)
            rb = beam(resid)                                                          # [P, N, S, Ty]
            ref = torch.zeros(p, shape[4], shape[3], shape[2], dtype=torch.complex128)
            for q in range(p):
                for u in range(shape[4]):
                    lam = n0(q) * hb[q, u].abs().pow(2).mean()
                    ref[q, u] = hb[q, u] @ _ridge(hb, rb, q, u, lam, w).T
            ref = torch.fft.ifft(ref.permute(0, 3, 2, 1), dim=-1, norm="ortho")        # [P, Ty, S, N]
        torch.testing.assert_close(out[0], (out0[0] + ref).to(torch.complex64), rtol=2e-3, atol=2e-4)


def test_demo_fit_recovers_a_linear_filter_from_demonstrations():
    """Noise-free labels from a fixed filter: many earlier pairs pin it down; pair 0 keeps the trunk's filter."""
    g = torch.Generator().manual_seed(3)
    for task in ("ce", "cp"):
        f, cfg = _fit_filter(task)
        with torch.no_grad():
            f.log_n0.fill_(-4.0)                     # a weak prior: the demonstrations decide
            f.n0_slope.zero_()
            f.log_pool.fill_(-20.0)                  # per-unit statistics: ce edge groups have their own filter
        b, p = 1, 12
        x, shape = _grids(task, cfg, b, p, g)
        n_g = -(-shape[3] // _group(task, cfg))
        c_true = torch.view_as_complex(torch.randn(shape[2] if task == "cp" else f.n_out, f.n_taps, 2, generator=g))
        taps = f.taps(x, n_g, _group(task, cfg))
        y = f.from_samples(torch.einsum("ot,bpgst->bpgso", c_true, taps), shape, _group(task, cfg))
        hx = torch.randn(b, p, n_g, cfg.d_model, generator=g)
        out = f(hx, x, shape, _group(task, cfg), y, torch.zeros_like(y)).detach()
        err = lambda q: float((out[:, q] - y[:, q]).abs().pow(2).sum() / y[:, q].abs().pow(2).sum())  # noqa: E731
        assert err(p - 1) < 1e-2 * err(0), (task, err(0), err(p - 1))
        no_fit = FilterTaps(ModelConfig.flavour("debug", demo_fit=False), task)
        no_fit.coef.load_state_dict(f.coef.state_dict())
        torch.testing.assert_close(out[:, 0], no_fit(hx, x, shape, _group(task, cfg))[:, 0])


def test_demo_fit_is_block_causal():
    """Pair q's output ignores the labels / base of pairs >= q and everything of pairs > q."""
    g = torch.Generator().manual_seed(4)
    for task in ("ce", "cp"):
        f, cfg = _fit_filter(task)
        b, p, q = 1, 5, 2
        x, shape = _grids(task, cfg, b, p, g)
        n_g = -(-shape[3] // _group(task, cfg))
        y = torch.view_as_complex(torch.randn(*shape, 2, generator=g))
        hx = torch.randn(b, p, n_g, cfg.d_model, generator=g)
        out = f(hx, x, shape, _group(task, cfg), y, torch.zeros_like(y))
        y2, x2, hx2 = y.clone(), x.clone(), hx.clone()
        y2[:, q:] += 1.0
        x2[:, q + 1:] *= 3.0
        hx2[:, q + 1:] += 1.0
        out2 = f(hx2, x2, shape, _group(task, cfg), y2, torch.zeros_like(y))
        torch.testing.assert_close(out2[:, : q + 1], out[:, : q + 1])
        assert not torch.allclose(out2[:, q + 1], out[:, q + 1])
