"""Sub-6 GHz / mmWave channel pairs from the SAME drop's clusters (LLM4WM style, TR 38.901 7.6.5).

One call: the topology and LOS state, the LSPs, the rays (steps 5-9) and the step-10 initial phases are drawn once,
with Sionna at the sub-6 carrier. Each band then gets its own array (half-wavelength ULA at its own wavelength),
its own channel coefficients (Sionna's ``ChannelCoefficientsGenerator`` at its carrier: array phases, Doppler and the
LOS phase use that band's wavelength), its own OFDM grid and its own TR 38.901 path loss (Table 7.4.1-1 at that
carrier, same distances and LOS state); the shadow fading realisation is shared. Simplification: the rays are not
re-drawn with the frequency-dependent LSP statistics of the mmWave carrier (delay and angle spreads of the sub-6
draw are used for both bands).

Panel offset (bf's latent form): the mmWave panel may be rotated by ``phi`` in azimuth (bearing, TR 38.901 7.1-4,
``bs_orientations = (phi, 0, 0)``) against the sub-6 panel. Sionna's step 11 then sees the same rays through the
rotated array (element positions and pattern), so a ray leaving at azimuth ``alpha`` and zenith ``theta`` has the
mmWave spatial frequency ``u = d sin(alpha - phi) sin(theta)`` (sub-6: ``d sin(alpha) sin(theta)``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from sionna.phy.channel.tr38901.channel_coefficients import Topology

from icwm.config import check
from icwm.wireless import arrays, fastcoef
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
    panel_offset_deg: [drop] float32, azimuth rotation of the mmWave panel against the sub-6 panel (0: aligned).
    """

    h_sub6: torch.Tensor
    h_mmw: torch.Tensor
    pathloss_db: torch.Tensor
    distance_m: torch.Tensor
    los: torch.Tensor
    pathloss_mmw_db: torch.Tensor
    panel_offset_deg: torch.Tensor


def validate_dual(cfg: SystemConfig) -> None:
    """Channel-layer checks of ``cfg`` plus both dual-band carriers within the scenario's validity range."""
    validate(cfg)
    lo, hi = LIMITS[cfg.scenario]["carrier_hz"]
    for name in ("sub6_carrier_hz", "mmw_carrier_hz"):
        val = getattr(cfg.dual_band, name)
        check(lo <= val <= hi, f"dual_band.{name}", f"a carrier within the {cfg.scenario} validity range "
              f"[{lo:g}, {hi:g}] Hz", val)


def rotated(links, yaw_rad: torch.Tensor):
    """``links`` seen by a BS panel rotated by ``yaw_rad`` [drop] (bearing angle) about the vertical axis.

    Only the coefficient topology's BS orientations change (rays, LSPs and LOS angles are global and shared).
    """
    t = links.topology
    orient = t.tx_orientations.clone()                                      # [drop, bs=1, 3]
    orient[..., 0] = orient[..., 0] + yaw_rad.to(orient)[:, None]
    topo = Topology(velocities=t.velocities, moving_end=t.moving_end, los_aoa=t.los_aoa, los_aod=t.los_aod,
                    los_zoa=t.los_zoa, los_zod=t.los_zod, los=t.los, distance_3d=t.distance_3d,
                    tx_orientations=orient, rx_orientations=t.rx_orientations)
    return dataclasses.replace(links, topology=topo)


def _band(links, n_ant: int, pattern: str, carrier_hz: float, n_sc: int, spacing_hz: float,
          interval_s: float, device: str, shared: fastcoef.SharedRays | None = None) -> torch.Tensor:
    """One band's frequency response [drop, user, sc, ant] (unit-power rays, element gains included); ``shared``:
    the fast path's band-independent terms (``_shared``), None to compute them (or on Sionna's path)."""
    bs = arrays.ula(n_ant, pattern, carrier_hz, device)
    a, tau = coefficients(links, bs, carrier_hz, 1, interval_s, shared=shared)
    return ofdm(a, tau, n_sc, spacing_hz)[:, :, 0]


def _shared(links, links_m, bs_array, carrier_hz: float, device: str) -> tuple:
    """The fast path's ``fastcoef.shared_rays`` for the sub-6 band and for the mmWave band: computed once and given
    to both when the mmWave panel is not rotated (same rays, element pattern and orientations: the same numbers bit
    for bit), else None for the mmWave band (its own fields). (None, None) on Sionna's path."""
    if not links.fast:
        return None, None
    ue = arrays.ue_array(carrier_hz, device)                              # element patterns only enter
    shared = fastcoef.shared_rays(links.rays, links.topology, bs_array, ue)
    same = torch.equal(links_m.topology.tx_orientations, links.topology.tx_orientations)
    return shared, shared if same else None


def _chunk(cfg: SystemConfig) -> int:
    return max(1, ELEMENT_BUDGET // (cfg.num_users * 24 * 20 * max(cfg.dual_band.mmw_ant, cfg.dual_band.sub6_ant)))


def _dual_chunk(cfg: SystemConfig, geo: Geometry, offset_deg: torch.Tensor, device: str) -> DualBand:
    db = cfg.dual_band
    pattern = cfg.array.pattern
    bs6 = arrays.ula(db.sub6_ant, pattern, db.sub6_carrier_hz, device)
    links = sample_links(cfg, geo, bs6, db.sub6_carrier_hz, device)
    links_m = rotated(links, offset_deg * (math.pi / 180.0))               # the mmWave panel's bearing
    shared6, shared_m = _shared(links, links_m, bs6, db.sub6_carrier_hz, device)
    h6 = _band(links, db.sub6_ant, pattern, db.sub6_carrier_hz, db.sub6_subcarriers, db.sub6_spacing_hz,
               cfg.sampling_interval_s, device, shared6)
    hm = _band(links_m, db.mmw_ant, pattern, db.mmw_carrier_hz, db.mmw_subcarriers, db.mmw_spacing_hz,
               cfg.sampling_interval_s, device, shared_m)
    sc_m = make_scenario(cfg, db.mmw_carrier_hz, arrays.ula(db.mmw_ant, pattern, db.mmw_carrier_hz, device), device)
    set_geometry(sc_m, cfg, geo, los=links.scenario.los.clone())
    sf_db = -10 * torch.log10(links.lsp.sf[:, 0])
    pl6 = links.lsp.pathloss[:, 0] + sf_db
    plm = sc_m.basic_pathloss[:, 0] + sf_db
    g6 = torch.pow(10.0, (db.ref_gain_db - pl6) / 20)[:, :, None, None]
    gm = torch.pow(10.0, (db.ref_gain_db - plm) / 20)[:, :, None, None]
    return DualBand((h6 * g6).to(torch.complex64), (hm * gm).to(torch.complex64), pl6.float(),
                    links.scenario.distance_3d[:, 0].float(), links.scenario.los[:, 0].clone(), plm.float(),
                    offset_deg)


def generate_dual_band(cfg: SystemConfig, n_drops: int, rng: torch.Generator,
                       device: str | torch.device = "cpu", panel_offset_deg: list[float] | None = None) -> DualBand:
    """Sub-6 / mmWave pairs of ``n_drops`` drops of ``cfg`` (K = ``cfg.num_users`` UEs each), one snapshot.

    Args:
        cfg: system configuration; ``cfg.dual_band`` fixes carriers, ULA sizes, grids and ``ref_gain_db``; the
            scenario, LOS mode, distance/azimuth/speed ranges and heights come from ``cfg``.
        n_drops: number of drops.  rng: caller's generator (topology, and one derived seed for Sionna).
        device: torch device.
        panel_offset_deg: None (aligned panels, no draw), or a range [low, high]: one mmWave panel rotation per drop,
            uniform in it, drawn from ``rng`` AFTER the topology and the Sionna seed (same drops as without it).

    Returns:
        DualBand (see the class).
    """
    validate_dual(cfg)
    check(n_drops >= 1, "n_drops", "an integer >= 1", n_drops)
    device = device_key(device)
    geo = draw_geometry(cfg, n_drops, rng, device)
    seed, step = derive_seed(rng), _chunk(cfg)
    offset = _panel_offsets(panel_offset_deg, n_drops, rng).to(device)
    with sionna_seeded(seed, device):
        parts = [_dual_chunk(cfg, sub, offset[s:s + step], device)
                 for s, sub in zip(range(0, n_drops, step), split(geo, step))]
    return concat(parts)


def _panel_offsets(rng_range: list[float] | None, n_drops: int, rng: torch.Generator) -> torch.Tensor:
    """[drop] float32 panel offsets in degrees: zeros without a range (no draw), else uniform in the range."""
    if rng_range is None:
        return torch.zeros(n_drops)
    check(len(rng_range) == 2 and -90.0 < rng_range[0] <= rng_range[1] < 90.0, "panel_offset_deg",
          "a range [low, high] inside (-90, 90) degrees", rng_range)
    return rng_range[0] + (rng_range[1] - rng_range[0]) * torch.rand((n_drops,), generator=rng)


def nominal_pathloss_law(cfg: SystemConfig, n_grid: int = 64) -> tuple[float, float]:
    """The cell's nominal sub-6 path-loss law as a log-distance fit ``PL(d) ~ A + B log10(d / 1 m)`` (dB, d 3D).

    The TR 38.901 basic path loss (Sionna's scenario at the sub-6 carrier, LOS and NLOS, no shadowing) on a grid of
    2D distances uniform over ``cfg.distance_m`` is averaged with the LOS probability (or ``cfg.los``) and fitted by
    least squares. A system constant (what a planning tool knows of the cell), not a draw: Sionna runs under a fixed
    seed with its generator restored.

    Returns:
        (A, B) in dB and dB per decade.
    """
    db = cfg.dual_band
    d2d = torch.linspace(cfg.distance_m[0], cfg.distance_m[1], n_grid, dtype=torch.float64)
    zeros = torch.zeros(1, n_grid, 3)
    ut = torch.stack([d2d, torch.zeros_like(d2d), torch.full_like(d2d, cfg.ue_height_m)], -1).float()[None]
    geo = Geometry(ut, torch.tensor([[[0.0, 0.0, cfg.bs_height_m]]]), zeros, torch.zeros(1, n_grid))
    pl = {}
    with sionna_seeded(0, "cpu"):
        for los in (True, False):
            sc = make_scenario(cfg, db.sub6_carrier_hz, arrays.ula(db.sub6_ant, cfg.array.pattern,
                                                                    db.sub6_carrier_hz), "cpu")
            set_geometry(sc, cfg, geo, los=los)
            pl[los] = sc.basic_pathloss[0, 0].double()
        p = sc.los_probability[0, 0].double() if cfg.los is None else torch.full_like(d2d, float(cfg.los))
        x = torch.log10(sc.distance_3d[0, 0].double())
    mean = p * pl[True] + (1 - p) * pl[False]
    coef = torch.linalg.lstsq(torch.stack([torch.ones_like(x), x], -1), mean[:, None]).solution[:, 0]
    return float(coef[0]), float(coef[1])
