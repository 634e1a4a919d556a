"""FilterTaps: the context-generated linear filters of the ce / cp heads apply the classical structures exactly."""
import torch

from icwm.model import ModelConfig
from icwm.model.heads import FILTER_HALF_WIDTH, FilterTaps


def _set(f: FilterTaps, c: torch.Tensor) -> None:
    """Make the filter emit the complex coefficients ``c [n_out, n_taps]`` whatever the token."""
    with torch.no_grad():
        f.coef.weight.zero_()
        f.coef.bias.copy_(torch.view_as_real(c).reshape(-1))


def test_ce_filter_is_a_pilot_window_interpolator():
    cfg = ModelConfig.flavour("debug")
    f = FilterTaps(cfg, "ce")
    g = torch.Generator().manual_seed(0)
    b, p, n_pil, n = 2, 3, 6, 5
    x = torch.randn(b, p, 1, n_pil, n, 2, generator=g)
    x = torch.view_as_complex(x)
    c = torch.zeros(cfg.pilot_spacing, 2 * FILTER_HALF_WIDTH + 1, dtype=torch.complex64)
    c[:, FILTER_HALF_WIDTH] = 1 - torch.arange(cfg.pilot_spacing) / cfg.pilot_spacing      # linear interpolation
    c[:, FILTER_HALF_WIDTH + 1] = torch.arange(cfg.pilot_spacing) / cfg.pilot_spacing
    _set(f, c)
    out = f(torch.randn(b, p, n_pil, cfg.d_model), x, 1, n_pil * cfg.pilot_spacing - 2, cfg.pilot_spacing)
    assert out.shape == (b, p, 1, n_pil * cfg.pilot_spacing - 2, n)
    nxt = torch.cat((x[:, :, 0, 1:], torch.zeros_like(x[:, :, 0, :1])), 2)               # zero padded at the edge
    w = torch.arange(cfg.pilot_spacing) / cfg.pilot_spacing
    ref = x[:, :, 0, :, None] * (1 - w)[:, None] + nxt[:, :, :, None] * w[:, None]       # [B, P, pil, sp, N]
    ref = ref.reshape(b, p, -1, n)[:, :, : out.shape[3]]
    torch.testing.assert_close(out[:, :, 0], ref)


def test_cp_filter_repeat_last_and_short_history():
    cfg = ModelConfig.flavour("debug")
    f = FilterTaps(cfg, "cp")
    c = torch.zeros(cfg.max_time, cfg.max_time, dtype=torch.complex64)
    c[:, -1] = 1.0                                                # every future slot = the last history sample
    _set(f, c)
    g = torch.Generator().manual_seed(1)
    for t_x in (cfg.max_time, 5):                                 # a shorter history is front padded
        x = torch.view_as_complex(torch.randn(2, 3, t_x, 10, 4, 2, generator=g))
        out = f(torch.randn(2, 3, 3, cfg.d_model), x, 4, 10, cfg.sc_group)
        assert out.shape == (2, 3, 4, 10, 4)
        torch.testing.assert_close(out, x[:, :, -1:].expand(-1, -1, 4, -1, -1))


def test_filters_start_at_zero():
    cfg = ModelConfig.flavour("debug")
    x = torch.view_as_complex(torch.randn(1, 2, 16, 8, 3, 2))
    assert FilterTaps(cfg, "cp")(torch.randn(1, 2, 2, cfg.d_model), x, 4, 8, cfg.sc_group).abs().max() == 0
