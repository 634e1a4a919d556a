"""Channel layer against TR 38.901 closed forms (path loss, LOS probability), the Doppler physics, Sionna's OFDM
transform, the normalisation contract and seeding; dual-band pairs. Tiny sizes, CPU."""
from __future__ import annotations

import math

import pytest
import torch
from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies

from icwm.wireless import channels
from icwm.wireless.sysconfig import ArrayConfig, DualBandConfig, SystemConfig

C = 299792458.0


def cfg_of(scenario: str = "uma", **kw) -> SystemConfig:
    base = dict(scenario=scenario, carrier_hz=2.4e9, array=ArrayConfig(kind="ula", cols=1, pattern="iso"),
                num_users=1, num_subcarriers=1, bs_height_m={"uma": 25.0, "umi": 10.0, "rma": 35.0}[scenario],
                distance_m={"uma": [35.0, 300.0], "umi": [20.0, 200.0], "rma": [35.0, 1000.0]}[scenario])
    base.update(kw)
    return SystemConfig(**base)


# ---- TR 38.901 Table 7.4.1-1, written independently of Sionna (fc in GHz, distances in m, h_E = 1 m) ----
def pl_uma(d3, d2, fc, hbs, hut, los):
    dbp = 4 * (hbs - 1) * (hut - 1) * fc * 1e9 / C
    pl1 = 28 + 22 * torch.log10(d3) + 20 * math.log10(fc)
    pl2 = 28 + 40 * torch.log10(d3) + 20 * math.log10(fc) - 9 * math.log10(dbp ** 2 + (hbs - hut) ** 2)
    pl_los = torch.where(d2 < dbp, pl1, pl2)
    nlos = 13.54 + 39.08 * torch.log10(d3) + 20 * math.log10(fc) - 0.6 * (hut - 1.5)
    return pl_los if los else torch.maximum(pl_los, nlos)


def pl_umi(d3, d2, fc, hbs, hut, los):
    dbp = 4 * (hbs - 1) * (hut - 1) * fc * 1e9 / C
    pl1 = 32.4 + 21 * torch.log10(d3) + 20 * math.log10(fc)
    pl2 = 32.4 + 40 * torch.log10(d3) + 20 * math.log10(fc) - 9.5 * math.log10(dbp ** 2 + (hbs - hut) ** 2)
    pl_los = torch.where(d2 < dbp, pl1, pl2)
    nlos = 35.3 * torch.log10(d3) + 22.4 + 21.3 * math.log10(fc) - 0.3 * (hut - 1.5)
    return pl_los if los else torch.maximum(pl_los, nlos)


def pl_rma(d3, d2, fc, hbs, hut, los, h=5.0, w=20.0):
    dbp = 2 * math.pi * hbs * hut * fc * 1e9 / C

    def pl1(d):
        return (20 * torch.log10(40 * math.pi * d * fc / 3) + min(0.03 * h ** 1.72, 10) * torch.log10(d)
                - min(0.044 * h ** 1.72, 14.77) + 0.002 * math.log10(h) * d)
    pl_los = torch.where(d2 < dbp, pl1(d3), pl1(torch.tensor(dbp)) + 40 * torch.log10(d3 / dbp))
    nlos = (161.04 - 7.1 * math.log10(w) + 7.5 * math.log10(h) - (24.37 - 3.7 * (h / hbs) ** 2) * math.log10(hbs)
            + (43.42 - 3.1 * math.log10(hbs)) * (torch.log10(d3) - 3) + 20 * math.log10(fc)
            - (3.2 * math.log10(11.75 * hut) ** 2 - 4.97))
    return pl_los if los else torch.maximum(pl_los, nlos)


FORMULA = {"uma": pl_uma, "umi": pl_umi, "rma": pl_rma}
SIGMA_SF = {("uma", True): 4.0, ("uma", False): 6.0, ("umi", True): 4.0, ("umi", False): 7.82,
            ("rma", True): 4.0, ("rma", False): 8.0}


@pytest.mark.parametrize("scenario,los", [(s, l) for s in ("uma", "umi", "rma") for l in (True, False)])
def test_pathloss_matches_table_7_4_1_1(scenario, los, rng):
    cfg = cfg_of(scenario, los=los)
    n = 240                                   # one UE per drop: independent shadowing samples
    d = channels.generate_drops(cfg, n, 1, rng)
    d3 = d.distance_m.double().flatten()
    d2 = (d3 ** 2 - (cfg.bs_height_m - cfg.ue_height_m) ** 2).sqrt()
    ref = FORMULA[scenario](d3, d2, cfg.carrier_hz / 1e9, cfg.bs_height_m, cfg.ue_height_m, los)
    resid = d.pathloss_db.double().flatten() - ref           # = shadow fading, N(0, sigma_SF^2)
    sigma = SIGMA_SF[(scenario, los)]
    assert d.los.all() == los and (~d.los).all() == (not los)
    assert abs(resid.mean().item()) < 4 * sigma / math.sqrt(n)
    assert abs(resid.std().item() / sigma - 1) < 0.2


@pytest.mark.parametrize("scenario,dist", [("uma", 100.0), ("umi", 60.0), ("rma", 500.0)])
def test_los_probability_matches_table_7_4_2_1(scenario, dist, rng):
    cfg = cfg_of(scenario, distance_m=[dist, dist], num_users=8)
    d = channels.generate_drops(cfg, 100, 1, rng)
    d2 = math.sqrt(dist ** 2)
    p = {"uma": 18 / d2 + math.exp(-d2 / 63) * (1 - 18 / d2),
         "umi": 18 / d2 + math.exp(-d2 / 36) * (1 - 18 / d2),
         "rma": math.exp(-(d2 - 10) / 1000)}[scenario]
    n = d.los.numel()
    assert abs(d.los.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)


def _autocorr(h: torch.Tensor, lag: int) -> float:
    """Ensemble autocorrelation Re E[h(t+lag) h*(t)] / E|h|^2 over links; h: [drop, user, time, sc, ant]."""
    return ((h[:, :, lag:] * h[:, :, :-lag].conj()).mean().real / (h.abs() ** 2).mean()).item()


def test_temporal_correlation_decreases_with_speed():
    base = cfg_of("uma", array=ArrayConfig(kind="ula", cols=2, pattern="iso"), num_users=2, num_subcarriers=4,
                  los=False, sampling_interval_s=0.5e-3)
    rho = {}
    for v in (10.0, 100.0):                   # same seed: same geometry and rays, only the speed differs
        d = channels.generate_drops(SystemConfig(**{**base.__dict__, "speed_kmh": [v, v]}), 40, 11,
                                    torch.Generator().manual_seed(5))
        rho[v] = _autocorr(d.h, 10)                          # lag 5 ms
    # Random headings make the ensemble isotropic, so it follows Jakes: J0(2 pi f_D tau) with f_D tau = 0.111 at
    # 10 km/h (J0 = 0.88) and 1.11 at 100 km/h (J0 = 0.30)
    assert abs(rho[10.0] - 0.88) < 0.06 and abs(rho[100.0] - 0.30) < 0.12


def test_los_phase_rotates_at_the_doppler_frequency():
    cfg = cfg_of("uma", array=ArrayConfig(kind="ula", cols=2, pattern="iso"), num_users=2, num_subcarriers=4,
                 los=True, speed_kmh=[100.0, 100.0], sampling_interval_s=0.5e-3)
    geo = channels.draw_geometry(cfg, 60, torch.Generator().manual_seed(9))
    d = channels.generate_drops(cfg, 60, 8, torch.Generator().manual_seed(9))
    to_bs = geo.bs_loc - geo.ut_loc                                       # LOS arrival direction at the UE
    r_hat = to_bs / to_bs.norm(dim=-1, keepdim=True)
    lam = C / cfg.carrier_hz
    w_los = 2 * math.pi / lam * (r_hat * geo.velocity).sum(-1)           # rad/s, [drop, user]
    x = (d.h[:, :, 1:] * d.h[:, :, :-1].conj()).sum((2, 3, 4))
    w_est = torch.angle(x) / cfg.sampling_interval_s
    w_max = 2 * math.pi * (100 / 3.6) / lam
    err = (w_est - w_los).abs() / w_max
    assert err.median() < 0.15
    assert torch.corrcoef(torch.stack([w_est.flatten(), w_los.flatten()]))[0, 1] > 0.9


@pytest.mark.parametrize("pattern", ["iso", "38.901"])
def test_normalised_power_and_shapes(pattern, rng):
    cfg = cfg_of("uma", array=ArrayConfig(kind="upa", rows=2, cols=2, pattern=pattern), num_users=3,
                 num_subcarriers=2)
    d = channels.generate_drops(cfg, 150, 2, rng)
    assert d.h.shape == (150, 3, 2, 2, 4) and d.h.dtype == torch.complex64
    assert d.pathloss_db.shape == d.distance_m.shape == d.los.shape == d.speed_kmh.shape == (150, 3)
    assert d.los.dtype == torch.bool and d.pathloss_db.dtype == torch.float32
    p = (d.h.abs() ** 2).mean((2, 3, 4))                                  # per link
    assert abs(p.mean().item() - 1) < 4 * p.std().item() / math.sqrt(p.numel()) + 0.02
    assert ((d.speed_kmh >= 10) & (d.speed_kmh <= 100)).all()
    d2 = (d.distance_m ** 2 - (cfg.bs_height_m - cfg.ue_height_m) ** 2).sqrt()
    assert (d2 > 35 - 1e-2).all() and (d2 < 300 + 1e-2).all()
    if pattern == "iso":
        assert d.element_gain_db.abs().max() < 0.02     # ray powers sum to 1 up to float32 rounding
    else:                                     # 38.901 element: 8 dBi peak, UEs within +-60 deg of broadside
        assert (d.element_gain_db < 8.01).all() and d.element_gain_db.mean() > 2


def test_same_seed_same_channels_and_no_global_rng_side_effects():
    cfg = cfg_of("umi", array=ArrayConfig(kind="ula", cols=2), num_users=2, num_subcarriers=3)
    state = torch.random.get_rng_state()
    a = channels.generate_drops(cfg, 3, 2, torch.Generator().manual_seed(7))
    b = channels.generate_drops(cfg, 3, 2, torch.Generator().manual_seed(7))
    c = channels.generate_drops(cfg, 3, 2, torch.Generator().manual_seed(8))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.h, b.h) and torch.equal(a.pathloss_db, b.pathloss_db) and torch.equal(a.los, b.los)
    assert not torch.allclose(a.h, c.h)
    g = torch.Generator().manual_seed(7)
    first, second = channels.generate_drops(cfg, 3, 2, g), channels.generate_drops(cfg, 3, 2, g)
    assert torch.equal(first.h, a.h) and not torch.allclose(second.h, a.h)


@pytest.mark.parametrize("fast", [False, True])
def test_each_path_is_deterministic_and_the_paths_share_the_draws(fast):
    cfg = cfg_of("uma", array=ArrayConfig(kind="upa", rows=2, cols=2), num_users=2, num_subcarriers=3)
    a, b = (channels.generate_drops(cfg, 2, 2, torch.Generator().manual_seed(4), fast=fast) for _ in range(2))
    other = channels.generate_drops(cfg, 2, 2, torch.Generator().manual_seed(4), fast=not fast)
    assert torch.equal(a.h, b.h)                                           # same seed and path: same bytes
    assert not torch.equal(a.h, other.h) and torch.allclose(a.h, other.h, atol=1e-5)
    assert torch.equal(a.pathloss_db, other.pathloss_db)                   # same large-scale draws


def test_chunking_keeps_drops_independent_of_batching(monkeypatch):
    cfg = cfg_of("uma", array=ArrayConfig(kind="ula", cols=2), num_users=2)
    whole = channels.generate_drops(cfg, 4, 1, torch.Generator().manual_seed(3))
    monkeypatch.setattr(channels, "ELEMENT_BUDGET", 1)     # one drop per chunk
    parts = channels.generate_drops(cfg, 4, 1, torch.Generator().manual_seed(3))
    assert parts.h.shape == whole.h.shape
    assert torch.allclose(parts.distance_m, whole.distance_m)           # same topology (caller's rng)
    assert torch.equal(parts.speed_kmh, whole.speed_kmh)                  # (LOS states are drawn per chunk)
    flat = parts.h.flatten(1)                                           # chunks draw their own small-scale fading
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(4) for j in range(i))
    assert torch.isfinite(flat.abs()).all()


def test_ofdm_matches_sionna(rng):
    a = torch.randn(2, 3, 5, 4, 2, dtype=torch.complex64, generator=rng)     # [drop, user, path, ant, time]
    tau = torch.rand(2, 3, 5, generator=rng) * 1e-6
    ours = channels.ofdm(a, tau, 6, 30e3)                                    # [drop, user, time, sc, ant]
    ref = cir_to_ofdm_channel(subcarrier_frequencies(6, 30e3),
                              a.permute(0, 1, 3, 2, 4).unsqueeze(2).unsqueeze(3),   # [d, u, 1, 1, ant, path, t]
                              tau.unsqueeze(2))                                      # [d, u, 1, path]
    ref = ref[:, :, 0, 0].permute(0, 1, 3, 4, 2)                             # [d, u, t, sc, ant]
    assert torch.allclose(ours, ref, atol=1e-5)


def test_dual_band_pathloss_angle_and_scaling():
    cfg = SystemConfig(scenario="uma", carrier_hz=1.9e9, los=True, num_users=2,
                       array=ArrayConfig(kind="ula", cols=8, pattern="iso"))
    d = channels.generate_dual_band(cfg, 40, torch.Generator().manual_seed(2))
    db = cfg.dual_band
    assert d.h_sub6.shape == (40, 2, db.sub6_subcarriers, db.sub6_ant)
    assert d.h_mmw.shape == (40, 2, db.mmw_subcarriers, db.mmw_ant) and d.h_mmw.dtype == torch.complex64
    # same distances and shadowing for both bands; UMa formulas differ only by the carrier term below d_BP
    assert torch.allclose(d.pathloss_mmw_db - d.pathloss_db, torch.full_like(d.pathloss_db, 20 * math.log10(28 / 1.9)),
                          atol=1e-3)
    for h, pl in ((d.h_sub6, d.pathloss_db), (d.h_mmw, d.pathloss_mmw_db)):   # h includes the path loss
        p = (h.abs() ** 2).mean((2, 3)) * 10 ** ((pl - db.ref_gain_db) / 10)
        assert abs(p.mean().item() - 1) < 0.1
    u = torch.linspace(-1, 1, 801)

    def dominant(h):   # ULA along y, half-wavelength: steering exp(j pi n u), u = sin(zod) sin(aod)
        a = torch.polar(torch.ones(h.shape[-1], u.numel()), math.pi * torch.arange(h.shape[-1])[:, None] * u)
        return u[((h @ a).abs() ** 2).sum(-2).argmax(-1)]
    agree = ((dominant(d.h_sub6) - dominant(d.h_mmw)).abs() < 0.1).float().mean()
    assert agree > 0.9


def test_dual_band_same_seed_same_pair():
    cfg = SystemConfig(num_users=2, dual_band=DualBandConfig(sub6_ant=4, sub6_subcarriers=8, mmw_ant=16,
                                                             mmw_subcarriers=8, codebook_size=32))
    a = channels.generate_dual_band(cfg, 2, torch.Generator().manual_seed(4))
    b = channels.generate_dual_band(cfg, 2, torch.Generator().manual_seed(4))
    assert torch.equal(a.h_sub6, b.h_sub6) and torch.equal(a.h_mmw, b.h_mmw)

