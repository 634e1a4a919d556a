"""Sub-6 GHz / mmWave channel pairs from the SAME drop's clusters (LLM4WM style, TR 38.901 7.6.5).

One call: the topology and LOS state, the LSPs, the rays (steps 5-9) and the step-10 initial phases are drawn once,
with Sionna at the sub-6 carrier. Each band then gets its own array (half-wavelength ULA at its own wavelength),
its own channel coefficients (Sionna's ``ChannelCoefficientsGenerator`` at its carrier: array phases, Doppler and the
LOS phase use that band's wavelength), its own OFDM grid and its own TR 38.901 path loss (Table 7.4.1-1 at that
carrier, same distances and LOS state); the shadow fading realisation is shared. Simplification: the rays are not
re-drawn with the frequency-dependent LSP statistics of the mmWave carrier (delay and angle spreads of the sub-6
draw are used for both bands).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from icwm.config import check
from icwm.wireless import arrays
from icwm.wireless.channels import (ELEMENT_BUDGET, LIMITS, Geometry, coefficients, concat, derive_seed, device_key,
                                    draw_geometry, make_scenario, ofdm, sample_links, set_geometry, sionna_seeded,
                                    split, validate)
from icwm.wireless.sysconfig import SystemConfig


@dataclass
class DualBand:
    """Two-band channels of ``drop`` drops with ``user`` UEs each (contract: docs/contracts.md, Channels).

    h_sub6: [drop, user, sc6, ant6] complex64, includes path loss + shadowing, scaled by 10^(ref_gain_db/20).
    h_mmw: [drop, user, scm, antm] complex64, same scaling, mmWave path loss.
    pathloss_db: [drop, user] float32, sub-6 path loss + shadow fading (dB).
    distance_m: [drop, user] float32, 3D distance.  los: [drop, user] bool.
    pathloss_mmw_db: [drop, user] float32, mmWave path loss + (the same) shadow fading (dB).
    """

    h_sub6: torch.Tensor
    h_mmw: torch.Tensor
    pathloss_db: torch.Tensor
    distance_m: torch.Tensor
    los: torch.Tensor
    pathloss_mmw_db: torch.Tensor


def validate_dual(cfg: SystemConfig) -> None:
    """Channel-layer checks of ``cfg`` plus both dual-band carriers within the scenario's validity range."""
    validate(cfg)
    lo, hi = LIMITS[cfg.scenario]["carrier_hz"]
    for name in ("sub6_carrier_hz", "mmw_carrier_hz"):
        val = getattr(cfg.dual_band, name)
        check(lo <= val <= hi, f"dual_band.{name}", f"a carrier within the {cfg.scenario} validity range "
              f"[{lo:g}, {hi:g}] Hz", val)


def _band(links, n_ant: int, pattern: str, carrier_hz: float, n_sc: int, spacing_hz: float,
          interval_s: float, device: str) -> torch.Tensor:
    """One band's frequency response [drop, user, sc, ant] (unit-power rays, element gains included)."""
    bs = arrays.ula(n_ant, pattern, carrier_hz, device)
    a, tau = coefficients(links, bs, carrier_hz, 1, interval_s)
    return ofdm(a, tau, n_sc, spacing_hz)[:, :, 0]


def _chunk(cfg: SystemConfig) -> int:
    return max(1, ELEMENT_BUDGET // (cfg.num_users * 24 * 20 * max(cfg.dual_band.mmw_ant, cfg.dual_band.sub6_ant)))


def _dual_chunk(cfg: SystemConfig, geo: Geometry, device: str) -> DualBand:
    db = cfg.dual_band
    pattern = cfg.array.pattern
    links = sample_links(cfg, geo, arrays.ula(db.sub6_ant, pattern, db.sub6_carrier_hz, device),
                         db.sub6_carrier_hz, device)
    h6 = _band(links, db.sub6_ant, pattern, db.sub6_carrier_hz, db.sub6_subcarriers, db.sub6_spacing_hz,
               cfg.sampling_interval_s, device)
    hm = _band(links, db.mmw_ant, pattern, db.mmw_carrier_hz, db.mmw_subcarriers, db.mmw_spacing_hz,
               cfg.sampling_interval_s, device)
    sc_m = make_scenario(cfg, db.mmw_carrier_hz, arrays.ula(db.mmw_ant, pattern, db.mmw_carrier_hz, device), device)
    set_geometry(sc_m, cfg, geo, los=links.scenario.los.clone())
    sf_db = -10 * torch.log10(links.lsp.sf[:, 0])
    pl6 = links.lsp.pathloss[:, 0] + sf_db
    plm = sc_m.basic_pathloss[:, 0] + sf_db
    g6 = torch.pow(10.0, (db.ref_gain_db - pl6) / 20)[:, :, None, None]
    gm = torch.pow(10.0, (db.ref_gain_db - plm) / 20)[:, :, None, None]
    return DualBand((h6 * g6).to(torch.complex64), (hm * gm).to(torch.complex64), pl6.float(),
                    links.scenario.distance_3d[:, 0].float(), links.scenario.los[:, 0].clone(), plm.float())


def generate_dual_band(cfg: SystemConfig, n_drops: int, rng: torch.Generator,
                       device: str | torch.device = "cpu") -> DualBand:
    """Sub-6 / mmWave pairs of ``n_drops`` drops of ``cfg`` (K = ``cfg.num_users`` UEs each), one snapshot.

    Args:
        cfg: system configuration; ``cfg.dual_band`` fixes carriers, ULA sizes, grids and ``ref_gain_db``; the
            scenario, LOS mode, distance/azimuth/speed ranges and heights come from ``cfg``.
        n_drops: number of drops.  rng: caller's generator (topology, and one derived seed for Sionna).
        device: torch device.

    Returns:
        DualBand (see the class).
    """
    validate_dual(cfg)
    check(n_drops >= 1, "n_drops", "an integer >= 1", n_drops)
    device = device_key(device)
    geo = draw_geometry(cfg, n_drops, rng, device)
    seed, step = derive_seed(rng), _chunk(cfg)
    with sionna_seeded(seed, device):
        parts = [_dual_chunk(cfg, sub, device) for sub in split(geo, step)]
    return concat(parts)
