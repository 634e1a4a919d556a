"""System configuration: the data that fixes a wireless setup (scenario, carrier, arrays, users, grid, ranges).

Configurations are data (YAML under ``configs/data``), never code. Demonstrations and the query of one
in-context episode always share one ``SystemConfig``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from icwm.config import check

SCENARIOS = ("uma", "umi", "rma")
ARRAY_KINDS = ("upa", "ula")
FORMS = ("given", "latent")


@dataclass
class ArrayConfig:
    """Base-station antenna array (single polarisation, isotropic or 3GPP-38.901 elements)."""

    kind: str = "upa"          # "upa" (rows x cols) or "ula" (cols elements along the horizontal axis)
    rows: int = 16             # vertical elements (ignored, forced to 1, for "ula")
    cols: int = 8              # horizontal elements
    spacing: float = 0.5       # element spacing in wavelengths
    pattern: str = "38.901"    # "38.901" or "iso"

    def __post_init__(self) -> None:
        check(self.kind in ARRAY_KINDS, "array.kind", f"one of {ARRAY_KINDS}", self.kind)
        check(self.rows >= 1 and self.cols >= 1, "array.rows/cols", "positive integers", (self.rows, self.cols))
        check(self.spacing > 0, "array.spacing", "a positive spacing in wavelengths", self.spacing)
        check(self.pattern in ("38.901", "iso"), "array.pattern", "'38.901' or 'iso'", self.pattern)
        if self.kind == "ula":
            self.rows = 1

    @property
    def num_ant(self) -> int:
        """Number of antenna elements Nt = rows x cols."""
        return self.rows * self.cols


@dataclass
class DualBandConfig:
    """Sub-6 GHz / mmWave pair for the bf, de, pe tasks (LLM4WM style): same drop, two bands."""

    sub6_carrier_hz: float = 1.9e9
    sub6_ant: int = 8                 # ULA elements at sub-6
    sub6_subcarriers: int = 64
    sub6_spacing_hz: float = 30e3
    mmw_carrier_hz: float = 28e9
    mmw_ant: int = 64                 # ULA elements at mmWave
    mmw_subcarriers: int = 64
    mmw_spacing_hz: float = 120e3
    codebook_size: int = 256          # DFT beams for the mmWave ULA
    ref_gain_db: float = 100.0        # sub-6 channel is scaled by 10^(ref_gain_db/20) (fixed, not per batch)

    def __post_init__(self) -> None:
        for name in ("sub6_ant", "sub6_subcarriers", "mmw_ant", "mmw_subcarriers", "codebook_size"):
            check(getattr(self, name) >= 1, f"dual_band.{name}", "a positive integer", getattr(self, name))
        check(self.codebook_size >= self.mmw_ant, "dual_band.codebook_size", ">= mmw_ant", self.codebook_size)


@dataclass
class LatentConfig:
    """Ranges of the latent parameters theta of the latent form (docs/contracts.md, ../shared/ICL.md section 2).

    theta is drawn once per episode (one group), uniformly in these ranges; the SNR latent of pre_sr, pre_mm, det,
    ce, cp and pf is drawn from ``SystemConfig.snr_db``.
    """

    panel_offset_deg: list[float] = field(default_factory=lambda: [-20.0, 20.0])   # bf: mmWave panel rotation
    power_offset_db: list[float] = field(default_factory=lambda: [-10.0, 10.0])    # de / pe: cell transmit power
    oracle_snapshots: int = 512      # ce / cp / pf: further snapshots of the same link the oracle's statistics use

    def __post_init__(self) -> None:
        for name in ("panel_offset_deg", "power_offset_db"):
            rng = getattr(self, name)
            check(len(rng) == 2 and rng[0] <= rng[1], f"latent.{name}", "a range [low, high] with low <= high", rng)
        check(-90.0 < self.panel_offset_deg[0] and self.panel_offset_deg[1] < 90.0, "latent.panel_offset_deg",
              "offsets inside (-90, 90) degrees", self.panel_offset_deg)
        check(self.oracle_snapshots >= 0, "latent.oracle_snapshots", "an integer >= 0 (0: no oracle)",
              self.oracle_snapshots)


@dataclass
class SystemConfig:
    """One system configuration. Ranges are ``[low, high]`` and sampled uniformly per drop/sample."""

    name: str = "uma_2p4ghz"
    scenario: str = "uma"                   # "uma" | "umi" | "rma" (TR 38.901 7.4 / 7.5)
    los: Optional[bool] = None              # None: LOS drawn from the TR 38.901 LOS probability
    carrier_hz: float = 2.4e9
    array: ArrayConfig = field(default_factory=ArrayConfig)
    num_users: int = 4                      # K single-antenna UEs
    num_subcarriers: int = 48               # M
    subcarrier_spacing_hz: float = 180e3
    snr_db: list[float] = field(default_factory=lambda: [5.0, 20.0])
    speed_kmh: list[float] = field(default_factory=lambda: [10.0, 100.0])
    sampling_interval_s: float = 0.5e-3     # time between channel snapshots (cp, time series)
    distance_m: list[float] = field(default_factory=lambda: [35.0, 300.0])   # 2D BS-UE distance
    azimuth_deg: list[float] = field(default_factory=lambda: [-60.0, 60.0])  # UE azimuth seen from BS
    bs_height_m: float = 25.0
    ue_height_m: float = 1.5
    dual_band: DualBandConfig = field(default_factory=DualBandConfig)
    form: str = "given"                     # "given": the query carries every system parameter; "latent": theta
    latent: LatentConfig = field(default_factory=LatentConfig)   # is drawn per episode and omitted from x
    fast: bool = True                       # TR 38.901 step 11 through icwm.wireless.fastcoef (Sionna's numbers
                                            # within 1e-6); false: Sionna's ChannelCoefficientsGenerator

    def __post_init__(self) -> None:
        check(self.form in FORMS, "form", f"one of {FORMS}", self.form)
        check(self.scenario in SCENARIOS, "scenario", f"one of {SCENARIOS}", self.scenario)
        check(self.carrier_hz > 0, "carrier_hz", "a positive frequency in Hz", self.carrier_hz)
        check(self.num_users >= 1, "num_users", "an integer >= 1", self.num_users)
        check(self.num_subcarriers >= 1, "num_subcarriers", "an integer >= 1", self.num_subcarriers)
        check(self.subcarrier_spacing_hz > 0, "subcarrier_spacing_hz", "a positive spacing", self.subcarrier_spacing_hz)
        check(self.sampling_interval_s > 0, "sampling_interval_s", "a positive interval", self.sampling_interval_s)
        for name in ("snr_db", "speed_kmh", "distance_m", "azimuth_deg"):
            rng = getattr(self, name)
            check(len(rng) == 2 and rng[0] <= rng[1], name, "a range [low, high] with low <= high", rng)
        check(self.speed_kmh[0] >= 0, "speed_kmh", "non-negative speeds", self.speed_kmh)
        check(self.distance_m[0] > 0, "distance_m", "positive distances", self.distance_m)

    @property
    def num_ant(self) -> int:
        """BS antenna count Nt."""
        return self.array.num_ant

    @property
    def bandwidth_hz(self) -> float:
        """Occupied bandwidth M x spacing."""
        return self.num_subcarriers * self.subcarrier_spacing_hz
