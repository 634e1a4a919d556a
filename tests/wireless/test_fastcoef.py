"""Fast TR 38.901 step 11 against Sionna's ChannelCoefficientsGenerator (the reference) on the same rays: UPA and
ULA (virtual grid split), LOS and NLOS, time evolution, rotated arrays with blockage, no sub-clustering; generate_drops
and the dual-band pair (aligned and rotated mmWave panel) through the default fast path against fast=False; the data
config's switch; unsupported arrays refused. Tiny sizes, CPU."""
from __future__ import annotations

import pytest
import torch
from sionna.phy.channel.tr38901 import PanelArray
from sionna.phy.channel.tr38901.channel_coefficients import ChannelCoefficientsGenerator

from icwm.data.config import DataConfig
from icwm.wireless import arrays, channels, dualband, fastcoef
from icwm.wireless.sysconfig import ArrayConfig, DualBandConfig, SystemConfig

TOL = 1e-5
N_TIME, FS = 4, 500.0          # 4 snapshots 2 ms apart: Doppler phases of several rad at 120 km/h


def cfg_of(scenario: str, kind: str, rows: int, cols: int, los, pattern: str = "38.901") -> SystemConfig:
    return SystemConfig(name="t", scenario=scenario, los=los, carrier_hz=3.5e9, num_users=3, num_subcarriers=4,
                        array=ArrayConfig(kind=kind, rows=rows, cols=cols, pattern=pattern),
                        bs_height_m=25.0 if scenario == "uma" else 10.0, speed_kmh=[30.0, 120.0])


def links_of(cfg: SystemConfig, n_drops: int = 2, seed: int = 1):
    geo = channels.draw_geometry(cfg, n_drops, torch.Generator().manual_seed(seed))
    bs = arrays.bs_array(cfg.array, cfg.carrier_hz, "cpu")
    with channels.sionna_seeded(seed + 100):
        links = channels.sample_links(cfg, geo, bs, cfg.carrier_hz, "cpu")
    return links, bs


def both(links, bs, carrier_hz: float, subclustering: bool = True):
    ue = arrays.ue_array(carrier_hz)
    ref = ChannelCoefficientsGenerator(carrier_hz, bs, ue, subclustering=subclustering, device="cpu")
    a, tau = ref(N_TIME, FS, links.lsp.k_factor, links.rays, links.topology, links.c_ds)
    h, d = fastcoef.fast_coefficients(N_TIME, FS, links.lsp.k_factor, links.rays, links.topology, links.c_ds, bs, ue,
                                      carrier_hz, subclustering=subclustering)
    return a, tau, h, d


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm())


@pytest.mark.parametrize("scenario,kind,rows,cols,los", [
    ("uma", "upa", 4, 3, False), ("uma", "upa", 4, 3, True), ("umi", "ula", 1, 6, None), ("rma", "upa", 2, 4, True)])
def test_equals_sionna(scenario, kind, rows, cols, los):
    cfg = cfg_of(scenario, kind, rows, cols, los)
    links, bs = links_of(cfg)
    a, tau, h, d = both(links, bs, cfg.carrier_hz)
    assert h.shape == a.shape and h.dtype == a.dtype == torch.complex64
    assert torch.equal(d, tau)
    assert rel(h, a) < TOL
    if los is not None:
        assert bool(links.topology.los.all()) == los
    # time evolution is really exercised: snapshots differ
    assert rel(h[..., -1], h[..., 0]) > 0.1


def test_rotated_arrays_blockage_and_no_subclustering():
    cfg = cfg_of("uma", "upa", 3, 4, True, pattern="38.901")
    links, bs = links_of(cfg, seed=4)
    g = torch.Generator().manual_seed(0)
    t = links.topology
    t.tx_orientations = (torch.rand(t.tx_orientations.shape, generator=g) - 0.5) * 1.5
    t.rx_orientations = (torch.rand(t.rx_orientations.shape, generator=g) - 0.5) * 3.0
    r = links.rays
    r.blockage_loss_db = torch.rand(r.powers.shape, generator=g) * 10
    r.los_blockage_loss_db = torch.rand(t.los.shape, generator=g) * 10
    for sub in (True, False):
        a, tau, h, d = both(links, bs, cfg.carrier_hz, subclustering=sub)
        assert torch.equal(d, tau) and rel(h, a) < TOL
    assert h.shape[3] == r.powers.shape[-1]           # no sub-clusters: one path per cluster


@pytest.mark.parametrize("kind,rows,cols,inner", [("ula", 1, 16, 4), ("ula", 1, 7, 1), ("upa", 4, 3, 4)])
def test_grid_split_rebuilds_the_element_positions(kind, rows, cols, inner):
    bs = arrays.bs_array(ArrayConfig(kind=kind, rows=rows, cols=cols), 28e9)
    d_col, d_row = fastcoef.grid_positions(bs)
    assert d_col.shape == (rows * cols // inner, 3) and d_row.shape == (inner, 3)
    rebuilt = (d_col[:, None] + d_row[None]).reshape(-1, 3)                # ant = a * inner + i
    assert torch.allclose(rebuilt, bs.ant_pos, atol=1e-7)


def test_generate_drops_fast_by_default_equals_reference():
    cfg = cfg_of("uma", "upa", 4, 2, None)
    assert cfg.fast
    slow = channels.generate_drops(cfg, 3, N_TIME, torch.Generator().manual_seed(7), fast=False)
    fast = channels.generate_drops(cfg, 3, N_TIME, torch.Generator().manual_seed(7))
    assert 0 < rel(fast.h, slow.h) < TOL                                   # two paths, same draws
    assert torch.equal(fast.pathloss_db, slow.pathloss_db) and torch.equal(fast.los, slow.los)
    assert torch.equal(fast.element_gain_db, slow.element_gain_db)
    off = channels.generate_drops(SystemConfig(**{**cfg.__dict__, "fast": False}), 3, N_TIME,
                                  torch.Generator().manual_seed(7))
    assert torch.equal(off.h, slow.h)                                      # cfg.fast = False is Sionna's path


@pytest.mark.parametrize("offset", [None, [-30.0, 30.0]])
def test_dual_band_fast_by_default_equals_reference(offset):
    cfg = SystemConfig(scenario="umi", carrier_hz=1.9e9, bs_height_m=10.0, distance_m=[20.0, 200.0], num_users=3,
                       array=ArrayConfig(kind="ula", cols=4),
                       dual_band=DualBandConfig(sub6_ant=4, sub6_subcarriers=6, mmw_ant=16, mmw_subcarriers=6,
                                                codebook_size=16))
    pair = {f: dualband.generate_dual_band(SystemConfig(**{**cfg.__dict__, "fast": f}), 2,
                                           torch.Generator().manual_seed(3), panel_offset_deg=offset)
            for f in (False, True)}
    ref, fast = pair[False], pair[True]
    for name in ("h_sub6", "h_mmw"):
        assert 0 < rel(getattr(fast, name), getattr(ref, name)) < TOL
    assert torch.equal(fast.pathloss_mmw_db, ref.pathloss_mmw_db) and torch.equal(fast.los, ref.los)
    assert torch.equal(fast.panel_offset_deg, ref.panel_offset_deg)
    assert (offset is None) == bool((ref.panel_offset_deg == 0).all())


@pytest.mark.parametrize("los", [True, False])
def test_shared_rays_give_every_band_the_same_bits(los):
    """The band-independent terms computed once (``shared_rays``, as a dual-band drop does) give each band exactly
    what its own full computation gives: sub-6 8-element and 28 GHz 64-element ULAs on the same rays."""
    cfg = cfg_of("uma", "ula", 1, 8, los)
    links, bs6 = links_of(cfg, seed=5)
    shared = fastcoef.shared_rays(links.rays, links.topology, bs6, arrays.ue_array(cfg.carrier_hz))
    for n_ant, carrier in ((8, cfg.carrier_hz), (64, 28e9)):
        bs, ue = arrays.ula(n_ant, "38.901", carrier), arrays.ue_array(carrier)
        args = (N_TIME, FS, links.lsp.k_factor, links.rays, links.topology, links.c_ds, bs, ue, carrier)
        h, d = fastcoef.fast_coefficients(*args)
        h_s, d_s = fastcoef.fast_coefficients(*args, shared=shared)
        assert torch.equal(h_s, h) and torch.equal(d_s, d)


def test_data_config_fast_switch_rewrites_every_system():
    systems = [SystemConfig(name="a"), SystemConfig(name="b", fast=False)]
    assert [s.fast for s in DataConfig(systems=systems).systems_for("pre_sr")] == [True, False]
    assert [s.fast for s in DataConfig(systems=systems, fast=False).systems_for("pre_sr")] == [False, False]


def test_unsupported_arrays_refused():
    cfg = cfg_of("uma", "upa", 2, 2, False)
    links, bs = links_of(cfg)
    dual = PanelArray(num_rows_per_panel=2, num_cols_per_panel=2, polarization="dual", polarization_type="cross",
                      antenna_pattern="38.901", carrier_frequency=cfg.carrier_hz)
    ue = arrays.ue_array(cfg.carrier_hz)
    args = (N_TIME, FS, links.lsp.k_factor, links.rays, links.topology, links.c_ds)
    with pytest.raises(ValueError, match="tx_array.polarization"):
        fastcoef.fast_coefficients(*args, dual, ue, cfg.carrier_hz)
    ue2 = PanelArray(num_rows_per_panel=1, num_cols_per_panel=2, polarization="single", polarization_type="V",
                     antenna_pattern="omni", carrier_frequency=cfg.carrier_hz)
    with pytest.raises(ValueError, match="rx_array"):
        fastcoef.fast_coefficients(*args, bs, ue2, cfg.carrier_hz)
