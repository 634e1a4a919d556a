"""FDD band map: delay x beam transform, exact recovery of a per-bin map, float64 reference, and on 38.901 links
(Sionna) the fitted map beats reusing the UL channel."""
import math

import pytest
import torch

from icwm.tasks import pf
from icwm.wireless.duplex import band_map_ls, delay_taps, from_delay_beam, to_delay_beam
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig


def _cn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.view_as_complex(torch.randn(*shape, 2, generator=g, dtype=torch.float64))


def test_transform_is_unitary_and_inverted():
    x = _cn(3, 12, 5, g=torch.Generator().manual_seed(0))
    t = to_delay_beam(x)
    torch.testing.assert_close(t.abs().pow(2).sum(), x.abs().pow(2).sum())
    torch.testing.assert_close(from_delay_beam(t), x)
    # a single path: one delay bin and one beam
    d, n = 8, 4
    path = torch.exp(-2j * math.pi * torch.arange(d)[:, None] * 3 / d) * torch.exp(2j * math.pi * torch.arange(n) / n)
    mag = to_delay_beam(path).abs()
    assert (mag > 1e-4 * mag.max()).sum() == 1


def test_recovers_an_exact_per_bin_map():
    g = torch.Generator().manual_seed(1)
    d, n, k = 8, 4, 6
    phase = torch.exp(2j * math.pi * torch.rand(d, n, generator=g, dtype=torch.float64))
    gains = _cn(k + 1, d, n, g=g)
    ul, dl = from_delay_beam(gains), from_delay_beam(phase * gains)
    pred = band_map_ls(ul[:-1], dl[:-1], ul[-1], n0=1e-9)
    assert (pred - dl[-1]).abs().pow(2).sum() / dl[-1].abs().pow(2).sum() < 1e-10


def test_matches_a_float64_loop():
    g = torch.Generator().manual_seed(2)
    k, d, n, half, n0 = 5, 6, 3, 1, 0.7
    ul_d, dl_d, ul = _cn(k, d, n, g=g), _cn(k, d, n, g=g), _cn(d, n, g=g)
    x, y, xq = delay_taps(to_delay_beam(ul_d), half), to_delay_beam(dl_d), delay_taps(to_delay_beam(ul), half)
    ref = torch.zeros(d, n, dtype=torch.complex128)
    for di in range(d):
        for ni in range(n):
            a = x[:, di, ni]                                                   # [k, F]
            lam = n0 * xq[di, ni].abs().pow(2).mean()
            w = torch.linalg.solve(a.mH @ a + lam * torch.eye(a.shape[1]), a.mH @ y[:, di, ni])   # LS: y = a w
            ref[di, ni] = xq[di, ni] @ w
    torch.testing.assert_close(band_map_ls(ul_d, dl_d, ul, half, n0), from_delay_beam(ref))


def test_rejects_mismatched_shapes():
    g = torch.Generator().manual_seed(3)
    with pytest.raises(ValueError, match="band_map_ls"):
        band_map_ls(_cn(4, 8, 3, g=g), _cn(4, 8, 3, g=g), _cn(6, 3, g=g))


def test_beats_ul_reuse_on_38901_links():
    """UMa links (Sionna TR 38.901): with 16 earlier snapshots the fitted map is several dB better than DL = UL."""
    cfg = SystemConfig(name="pf_test", scenario="uma", array=ArrayConfig("ula", 1, 8), num_users=4,
                       num_subcarriers=32, subcarrier_spacing_hz=180e3, snr_db=(20.0, 20.0))
    s = pf.generate(cfg, 8, 17, torch.Generator().manual_seed(4))
    b = pf.baselines(s)
    q = {key: v[:, -1:] for key, v in s.items()}
    nmse = {m: pf.loss({"h_dl": b[m]["h_dl"][:, -1:]}, q).mean() for m in ("nearest", "band_ls")}
    gain_db = 10 * torch.log10(nmse["nearest"] / nmse["band_ls"])
    assert gain_db > 3.0, (nmse, gain_db)
