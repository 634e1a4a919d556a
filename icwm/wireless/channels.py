"""3GPP TR 38.901 UMa / UMi / RMa channels through Sionna 2.x (PyTorch): drops of K single-antenna UEs around
one BS, OFDM frequency response over time.

Pipeline per call (downlink view, BS = transmitter): topology drawn here from the caller's generator (UE 2D
distance and azimuth uniform in the config ranges, BS at the origin facing +x with zero tilt, UEs outdoor, speeds
uniform in ``cfg.speed_kmh`` with uniform horizontal directions); then Sionna's scenario (LOS state, path loss),
``LSPGenerator`` (steps 1-4), ``RaysGenerator`` (steps 5-9), the step-10 phases, step 11 (time evolution through the
per-ray Doppler) and the OFDM response ``H(f) = sum_p a_p exp(-j 2 pi f tau_p)``. Step 11 runs through
``icwm.wireless.fastcoef`` (``cfg.fast``, the default: Sionna's numbers within 1e-6, several x faster, no random
draws) or Sionna's own ``ChannelCoefficientsGenerator`` (``fast=False``); both read the same rays, so the two paths
give the same drops from the same generator state.

Seeding: Sionna draws every random number from its own generator ``sionna.phy.config.torch_rng(device)``. Each call
takes ONE ``torch.randint`` from the caller's ``rng``, seeds Sionna's generator of that device with it for the
duration of the call and restores that generator's previous state afterwards (``sionna_seeded``). Global torch
RNG state is never touched, and the same ``rng`` state gives the same channels.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from sionna.phy import config as sionna_config
from sionna.phy.channel import subcarrier_frequencies
from sionna.phy.channel.tr38901 import LSP, LSPGenerator, Rays, RaysGenerator
from sionna.phy.channel.tr38901.channel_coefficients import ChannelCoefficientsGenerator, Topology
from sionna.phy.channel.tr38901.rma_scenario import RMaScenario
from sionna.phy.channel.tr38901.uma_scenario import UMaScenario
from sionna.phy.channel.tr38901.umi_scenario import UMiScenario

from icwm.config import check
from icwm.wireless import arrays, fastcoef
from icwm.wireless.sysconfig import SystemConfig

# Validity ranges of TR 38.901 Table 7.4.1-1 (carrier in Hz, 2D distance in m, heights in m).
LIMITS = {
    "uma": {"carrier_hz": (0.5e9, 100e9), "distance_m": (10.0, 5000.0), "ue_height_m": (1.5, 22.5),
            "bs_height_m": (10.0, 150.0)},
    "umi": {"carrier_hz": (0.5e9, 100e9), "distance_m": (10.0, 5000.0), "ue_height_m": (1.5, 22.5),
            "bs_height_m": (10.0, 150.0)},
    "rma": {"carrier_hz": (0.5e9, 30e9), "distance_m": (10.0, 10000.0), "ue_height_m": (1.0, 10.0),
            "bs_height_m": (10.0, 150.0)},
}
SCENARIO_CLASSES = {"uma": UMaScenario, "umi": UMiScenario, "rma": RMaScenario}
ELEMENT_BUDGET = 1 << 23     # max complex entries of the per-ray coefficient tensor per chunk of drops


@dataclass
class Drops:
    """Channels of ``drop`` independent drops with ``user`` UEs each (contract: docs/contracts.md, Channels).

    h: [drop, user, time, sc, ant] complex64, path loss, shadowing and the mean element gain divided out, so that
       E|h|^2 = 1 per entry given the link's clusters. Antenna order ``ant = col * rows + row``.
    pathloss_db: [drop, user] float32, path loss + shadow fading (dB, positive).
    distance_m: [drop, user] float32, 3D BS-UE distance.  los: [drop, user] bool.  speed_kmh: [drop, user] float32.
    element_gain_db: [drop, user] float32, power-weighted BS element gain over the link's rays (0 dB for "iso").
    """

    h: torch.Tensor
    pathloss_db: torch.Tensor
    distance_m: torch.Tensor
    los: torch.Tensor
    speed_kmh: torch.Tensor
    element_gain_db: torch.Tensor


@dataclass
class Geometry:
    """Topology of a batch of drops in Sionna's layout (one BS per drop)."""

    ut_loc: torch.Tensor       # [drop, user, 3]
    bs_loc: torch.Tensor       # [drop, 1, 3]
    velocity: torch.Tensor     # [drop, user, 3] m/s
    speed_kmh: torch.Tensor    # [drop, user]


@dataclass
class Links:
    """Sionna's large- and small-scale state of a batch of drops (steps 1-9), before the coefficients."""

    scenario: object           # sionna SystemLevelScenario
    lsp: LSP
    rays: Rays                 # rays.phases set (step 10 drawn here so several bands can share it)
    topology: Topology
    c_ds: torch.Tensor         # [drop, 1, user] cluster delay spread in s
    fast: bool = True          # step 11 of these links through fastcoef (``SystemConfig.fast``), else Sionna's


def validate(cfg: SystemConfig) -> None:
    """Check the fields only the channel layer can judge (TR 38.901 validity ranges); ``ValueError`` names the field."""
    lim = LIMITS[cfg.scenario]
    lo, hi = lim["carrier_hz"]
    check(lo <= cfg.carrier_hz <= hi, "carrier_hz", f"a carrier within the {cfg.scenario} validity range "
          f"[{lo:g}, {hi:g}] Hz (TR 38.901 Table 7.4.1-1)", cfg.carrier_hz)
    lo, hi = lim["distance_m"]
    check(lo <= cfg.distance_m[0] and cfg.distance_m[1] <= hi, "distance_m",
          f"2D distances within [{lo:g}, {hi:g}] m for {cfg.scenario}", cfg.distance_m)
    for name in ("ue_height_m", "bs_height_m"):
        lo, hi = lim[name]
        check(lo <= getattr(cfg, name) <= hi, name, f"a height within [{lo:g}, {hi:g}] m for {cfg.scenario}",
              getattr(cfg, name))
    check(-180.0 <= cfg.azimuth_deg[0] and cfg.azimuth_deg[1] <= 180.0, "azimuth_deg",
          "azimuths within [-180, 180] degrees", cfg.azimuth_deg)
    check(cfg.array.spacing <= 10.0, "array.spacing", "an element spacing of at most 10 wavelengths",
          cfg.array.spacing)


def device_key(device: torch.device | str) -> str:
    """Device string as Sionna keys it (``'cpu'``, ``'cuda:0'``)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(dev)


@contextmanager
def sionna_seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed Sionna's generator of ``device`` with ``seed`` inside the block; restore its state on exit."""
    gen = sionna_config.torch_rng(device_key(device))
    state = gen.get_state()
    gen.manual_seed(int(seed))
    try:
        yield
    finally:
        gen.set_state(state)


def derive_seed(rng: torch.Generator) -> int:
    """One seed for Sionna drawn from the caller's generator (advances ``rng`` by one draw)."""
    return int(torch.randint(0, 2 ** 62, (1,), generator=rng).item())


def _uniform(lo_hi: list[float], shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
    return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * torch.rand(shape, generator=rng, dtype=torch.float64)


def draw_geometry(cfg: SystemConfig, n_drops: int, rng: torch.Generator, device: str = "cpu") -> Geometry:
    """UE positions, velocities and speeds of ``n_drops`` drops drawn from ``rng`` (float64 draws, float32 out).

    Returns:
        Geometry with ut_loc [drop, user, 3], bs_loc [drop, 1, 3], velocity [drop, user, 3], speed_kmh [drop, user].
    """
    shape = (n_drops, cfg.num_users)
    d2d = _uniform(cfg.distance_m, shape, rng)
    az = torch.deg2rad(_uniform(cfg.azimuth_deg, shape, rng))
    speed = _uniform(cfg.speed_kmh, shape, rng)
    heading = 2 * math.pi * torch.rand(shape, generator=rng, dtype=torch.float64)
    ut = torch.stack([d2d * torch.cos(az), d2d * torch.sin(az), torch.full(shape, cfg.ue_height_m,
                                                                            dtype=torch.float64)], -1)
    bs = torch.zeros(n_drops, 1, 3, dtype=torch.float64)
    bs[..., 2] = cfg.bs_height_m
    v = speed / 3.6
    vel = torch.stack([v * torch.cos(heading), v * torch.sin(heading), torch.zeros_like(v)], -1)
    f32 = dict(dtype=torch.float32, device=device)
    return Geometry(ut.to(**f32), bs.to(**f32), vel.to(**f32), speed.to(**f32))


def make_scenario(cfg: SystemConfig, carrier_hz: float, bs_array, device: str):
    """Sionna scenario object of ``cfg.scenario`` at ``carrier_hz`` (downlink, path loss and shadowing on)."""
    ue = arrays.ue_array(carrier_hz, device)
    if cfg.scenario == "rma":
        return RMaScenario(carrier_hz, ue, bs_array, "downlink", device=device)
    return SCENARIO_CLASSES[cfg.scenario](carrier_hz, "low", ue, bs_array, "downlink", device=device)


def set_geometry(scenario, cfg: SystemConfig, geo: Geometry, los: torch.Tensor | bool | None = None) -> None:
    """Give ``geo`` to ``scenario``: outdoor UEs (not in car), zero orientations, LOS forced by ``los``/``cfg.los``."""
    n, k = geo.ut_loc.shape[:2]
    dev = geo.ut_loc.device
    kwargs = dict(ut_loc=geo.ut_loc, bs_loc=geo.bs_loc, ut_orientations=torch.zeros(n, k, 3, device=dev),
                  bs_orientations=torch.zeros(n, 1, 3, device=dev), ut_velocities=geo.velocity,
                  in_state=torch.zeros(n, k, dtype=torch.bool, device=dev))
    los = cfg.los if los is None else los
    kwargs["los"] = "random" if los is None else los
    if cfg.scenario == "rma":
        kwargs["in_car"] = torch.zeros(n, k, dtype=torch.bool, device=dev)
    scenario.set_topology(**kwargs)


def sample_links(cfg: SystemConfig, geo: Geometry, bs_array, carrier_hz: float, device: str) -> Links:
    """TR 38.901 steps 1-10 for a batch of drops with Sionna (draws from Sionna's generator).

    Returns:
        Links with the scenario, LSPs, rays (with the step-10 initial phases) and Sionna's coefficient topology.
    """
    sc = make_scenario(cfg, carrier_hz, bs_array, device)
    set_geometry(sc, cfg, geo)
    lsp_gen, ray_gen = LSPGenerator(sc), RaysGenerator(sc)
    lsp_gen.topology_updated_callback()          # as SystemLevelChannel.set_topology does
    ray_gen.topology_updated_callback()
    lsp = lsp_gen()
    rays = ray_gen(lsp)
    gen = sionna_config.torch_rng(device_key(device))
    rays.phases = (torch.rand(rays.aoa.shape + (4,), generator=gen, device=device) * 2 - 1) * math.pi
    rad = math.pi / 180.0
    topo = Topology(velocities=sc.ut_velocities, moving_end="rx", los_aoa=sc.los_aoa * rad, los_aod=sc.los_aod * rad,
                    los_zoa=sc.los_zoa * rad, los_zod=sc.los_zod * rad, los=sc.los, distance_3d=sc.distance_3d,
                    tx_orientations=sc.bs_orientations, rx_orientations=sc.ut_orientations)
    return Links(sc, lsp, rays, topo, sc.get_param("cDS") * 1e-9, cfg.fast)


def coefficients(links: Links, bs_array, carrier_hz: float, n_time: int, interval_s: float,
                 fast: bool | None = None, shared: fastcoef.SharedRays | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """TR 38.901 step 11 (path coefficients with Doppler time evolution) for ``bs_array`` at ``carrier_hz``:
    through ``icwm.wireless.fastcoef`` (same numbers within 1e-6 relative, separable array) or Sionna's
    ``ChannelCoefficientsGenerator``; ``fast`` None takes ``links.fast`` (the system's ``fast``). ``shared``: the
    fast path's ``fastcoef.shared_rays`` of these links, computed once for several bands (ignored by Sionna's path).

    Returns:
        a: [drop, user, path, ant, time] complex64 (unit average power per link before element gains).
        tau: [drop, user, path] float32 delays in s.
    """
    ue = arrays.ue_array(carrier_hz, device_key(links.c_ds.device))
    if links.fast if fast is None else fast:
        a, tau = fastcoef.fast_coefficients(n_time, 1.0 / interval_s, links.lsp.k_factor, links.rays, links.topology,
                                            links.c_ds, bs_array, ue, carrier_hz, shared=shared)
    else:
        gen = ChannelCoefficientsGenerator(carrier_hz, bs_array, ue, subclustering=True,
                                           device=device_key(links.c_ds.device))
        a, tau = gen(n_time, 1.0 / interval_s, links.lsp.k_factor, links.rays, links.topology, links.c_ds)
    return a[:, 0, :, :, 0], tau[:, 0]      # [drop, tx=1, user, path, rx_ant=1, ant, time] -> [drop, user, path, ant, time]


def ofdm(a: torch.Tensor, tau: torch.Tensor, n_sc: int, spacing_hz: float) -> torch.Tensor:
    """Frequency response on ``n_sc`` subcarriers around the carrier (Sionna's ``subcarrier_frequencies``).

    Args:
        a: [drop, user, path, ant, time] complex64.  tau: [drop, user, path] float32.

    Returns:
        h: [drop, user, time, sc, ant] complex64.
    """
    f = subcarrier_frequencies(n_sc, spacing_hz, device=a.device).to(tau.dtype)
    phase = -2 * math.pi * tau.unsqueeze(-1) * f                          # [drop, user, path, sc]
    e = torch.polar(torch.ones_like(phase), phase)
    return torch.einsum("bupat,bupf->butfa", a, e)


def mean_element_gain(links: Links, bs_array) -> torch.Tensor:
    """Expected |h|^2 per entry of a link given its rays: power-weighted BS element gain (linear).

    BS orientation is zero, so the global angles are the array's local ones. Returns: [drop, user] float32.
    """
    r = links.rays
    az = torch.atan2(torch.sin(r.aod), torch.cos(r.aod))
    g_rays = (arrays.element_gain(bs_array, r.zod, az).mean(-1) * r.powers).sum(-1)[:, 0]   # [drop, user]
    t = links.topology
    g_los = arrays.element_gain(bs_array, t.los_zod, torch.atan2(torch.sin(t.los_aod), torch.cos(t.los_aod)))[:, 0]
    k = links.lsp.k_factor[:, 0]
    return torch.where(t.los[:, 0], (g_rays + k * g_los) / (k + 1), g_rays)


def _chunk(cfg: SystemConfig, n_time: int) -> int:
    per_drop = cfg.num_users * 24 * 20 * cfg.num_ant * max(n_time, 1)
    return max(1, ELEMENT_BUDGET // per_drop)


def _drops_chunk(cfg: SystemConfig, geo: Geometry, n_time: int, device: str, fast: bool | None) -> Drops:
    bs = arrays.bs_array(cfg.array, cfg.carrier_hz, device)
    links = sample_links(cfg, geo, bs, cfg.carrier_hz, device)
    a, tau = coefficients(links, bs, cfg.carrier_hz, n_time, cfg.sampling_interval_s, fast)
    gain = mean_element_gain(links, bs)
    h = ofdm(a, tau, cfg.num_subcarriers, cfg.subcarrier_spacing_hz) / gain.sqrt()[:, :, None, None, None]
    pl = links.lsp.pathloss - 10 * torch.log10(links.lsp.sf)
    return Drops(h.to(torch.complex64), pl[:, 0].float(), links.scenario.distance_3d[:, 0].float(),
                 links.scenario.los[:, 0].clone(), geo.speed_kmh, 10 * torch.log10(gain).float())


def generate_drops(cfg: SystemConfig, n_drops: int, n_time: int, rng: torch.Generator,
                   device: str | torch.device = "cpu", fast: bool | None = None) -> Drops:
    """Drops of ``cfg``: K single-antenna UEs around one BS, OFDM response over ``n_time`` snapshots.

    Args:
        cfg: system configuration (scenario, carrier, array, K, M, spacing, ranges, sampling interval).
        n_drops: number of independent drops.  n_time: snapshots ``cfg.sampling_interval_s`` apart.
        rng: caller's generator; drives the topology and (through one derived seed) Sionna.
        device: torch device for the computation and the outputs.
        fast: step 11 through ``icwm.wireless.fastcoef`` (True) or Sionna's generator (False); None: ``cfg.fast``.
            Same rays and draws either way: the drops agree within 1e-6 relative (tests/wireless/test_fastcoef.py).

    Returns:
        Drops (see the class); h: [drop, user, time, sc, ant] complex64.
    """
    validate(cfg)
    check(n_drops >= 1, "n_drops", "an integer >= 1", n_drops)
    check(n_time >= 1, "n_time", "an integer >= 1", n_time)
    device = device_key(device)
    geo = draw_geometry(cfg, n_drops, rng, device)
    seed, step = derive_seed(rng), _chunk(cfg, n_time)
    with sionna_seeded(seed, device):
        parts = [_drops_chunk(cfg, sub, n_time, device, fast) for sub in split(geo, step)]
    return concat(parts)


def split(geo: Geometry, step: int) -> Iterator[Geometry]:
    """Consecutive chunks of at most ``step`` drops of ``geo``."""
    for s in range(0, geo.ut_loc.shape[0], step):
        yield Geometry(geo.ut_loc[s:s + step], geo.bs_loc[s:s + step], geo.velocity[s:s + step],
                       geo.speed_kmh[s:s + step])


def concat(parts: list):
    """Concatenate dataclasses of tensors (Drops, DualBand) along the drop dimension."""
    cls = type(parts[0])
    return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


def generate_dual_band(cfg: SystemConfig, n_drops: int, rng: torch.Generator, device: str | torch.device = "cpu"):
    """Sub-6 / mmWave pairs from the same drops: see ``icwm.wireless.dualband.generate_dual_band``.

    Returns:
        ``icwm.wireless.dualband.DualBand`` (h_sub6 [drop, user, sc6, ant6], h_mmw [drop, user, scm, antm], ...).
    """
    from icwm.wireless import dualband   # dualband builds on this module

    return dualband.generate_dual_band(cfg, n_drops, rng, device)


def load_family(path: str | Path) -> list[SystemConfig]:
    """Systems of a ``configs/systems/*.yaml`` family (``systems: [SystemConfig, ...]``), each also checked
    against the TR 38.901 validity ranges (``validate``). Unknown keys raise ``ValueError`` naming the field."""
    from icwm.data.config import load_family as _load   # the typed loader lives with the data config

    systems = _load(path)
    for s in systems:
        validate(s)
    return systems
