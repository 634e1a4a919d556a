"""ce LMMSE handover: the classical LMMSE from the earlier pairs' covariance (same as the ce baseline at the query),
block-causal, a gate that is 0 without demonstrations and grows with them, and the model wiring."""
from __future__ import annotations

import pytest
import torch

from icwm import tasks
from icwm.model import ModelConfig, build_model
from icwm.model.handover import LmmseHandover
from model_batches import random_batch


def _episode(p: int = 6, seed: int = 0) -> dict:
    """Channels with a shared frequency correlation (a few taps) and noisy comb-pilot LS estimates."""
    g = torch.Generator().manual_seed(seed)
    b, t, s, n = 2, 1, 16, 3
    taps = torch.randn(b, p, t, 3, n, 2, generator=g)
    h = torch.fft.fft(torch.nn.functional.pad(torch.view_as_complex(taps), (0, 0, 0, s - 3)), dim=-2, norm="ortho")
    snr = torch.full((b, p), 15.0)
    noise = torch.view_as_complex(torch.randn(b, p, t, s // 4, n, 2, generator=g)) * 10 ** (-15 / 20) * 0.5 ** 0.5
    return {"h": h.to(torch.complex64), "h_ls": (h[..., ::4, :] + noise).to(torch.complex64), "snr_db": snr}


def test_query_estimate_equals_the_ce_lmmse_baseline():
    ep = _episode()
    mod = LmmseHandover(pilot_spacing=4)
    got = mod.lmmse(ep["h_ls"], ep["h"], ep["snr_db"])[:, -1]
    ref = tasks.get("ce").baselines(ep)["lmmse"]["h"][:, -1]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_block_causal_and_gated():
    ep = _episode()
    mod = LmmseHandover(pilot_spacing=4)
    out = torch.zeros_like(ep["h"])
    with torch.no_grad():
        ref = mod(ep["h_ls"], ep["h"], ep["snr_db"], out)
        later = ep["h"].clone()
        later[:, 3:] *= 5.0                                 # labels of pairs >= 3 must not reach pairs <= 3
        got = mod(ep["h_ls"], later, ep["snr_db"], out)
    torch.testing.assert_close(got[:, :4], ref[:, :4])
    assert not torch.allclose(got[:, 4:], ref[:, 4:])
    with torch.no_grad():
        g = mod.gate(17, torch.device("cpu"))
    assert g[0] == 0 and bool((g[1:].diff() > 0).all())
    assert float(g[1]) < 0.25 and 0.6 < float(g[16]) < 0.95       # head first, LMMSE with many demonstrations
    assert torch.equal(ref[:, 0], out[:, 0])               # pair 0: the head's own estimate


def test_gate_one_hands_over_completely():
    ep = _episode(seed=1)
    mod = LmmseHandover(pilot_spacing=4)
    with torch.no_grad():
        mod.gate_a.fill_(50.0)
        mod.gate_b.fill_(0.0)
        got = mod(ep["h_ls"], ep["h"], ep["snr_db"], torch.randn_like(ep["h"]))
    torch.testing.assert_close(got[:, 1:], mod.lmmse(ep["h_ls"], ep["h"], ep["snr_db"])[:, 1:])


@pytest.mark.parametrize("flag", [False, True])
def test_model_uses_it_only_when_configured(flag):
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug", ce_handover=flag)).eval()
    assert (model.heads["ce"].handover is not None) == flag
    b = random_batch("ce", k=3)
    with torch.no_grad():
        out = model(b)["h"]
    assert out.shape == b["h"].shape and torch.isfinite(torch.view_as_real(out)).all()
