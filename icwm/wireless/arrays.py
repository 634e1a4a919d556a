"""Antenna arrays of the channel layer: Sionna TR 38.901 panel arrays built from ``ArrayConfig``.

Antenna ordering follows Sionna's ``PanelArray`` (one panel, single polarisation): element
``ant = col * rows + row`` (rows vary fastest), so ``h[..., ant].reshape(..., cols, rows)`` splits the
horizontal and vertical array dimensions. A ULA is a panel with one row (elements along the horizontal
y-axis of the array's local coordinate system). The array faces the local x-axis (broadside).
"""
from __future__ import annotations

import torch
from sionna.phy.channel.tr38901 import PanelArray

from icwm.config import check
from icwm.wireless.sysconfig import ArrayConfig

PATTERNS = {"38.901": "38.901", "iso": "omni"}   # icwm name -> Sionna name


def bs_array(arr: ArrayConfig, carrier_hz: float, device: str = "cpu") -> PanelArray:
    """BS array (single vertical polarisation) of ``arr`` at ``carrier_hz``.

    Args:
        arr: array configuration (UPA rows x cols or ULA of cols elements, spacing in wavelengths, pattern).
        carrier_hz: carrier frequency (sets the wavelength that scales the element positions).
        device: torch device string.

    Returns:
        A ``sionna.phy.channel.tr38901.PanelArray`` with ``arr.num_ant`` elements.
    """
    check(arr.pattern in PATTERNS, "array.pattern", f"one of {tuple(PATTERNS)}", arr.pattern)
    return PanelArray(num_rows_per_panel=arr.rows, num_cols_per_panel=arr.cols, polarization="single",
                      polarization_type="V", antenna_pattern=PATTERNS[arr.pattern], carrier_frequency=carrier_hz,
                      element_vertical_spacing=arr.spacing, element_horizontal_spacing=arr.spacing, device=device)


def ula(n_ant: int, pattern: str, carrier_hz: float, device: str = "cpu") -> PanelArray:
    """Half-wavelength ULA of ``n_ant`` elements along the horizontal axis (used by the dual-band pair)."""
    return bs_array(ArrayConfig(kind="ula", rows=1, cols=n_ant, spacing=0.5, pattern=pattern), carrier_hz, device)


def ue_array(carrier_hz: float, device: str = "cpu") -> PanelArray:
    """Single-antenna UE: one omnidirectional, vertically polarised element."""
    return PanelArray(num_rows_per_panel=1, num_cols_per_panel=1, polarization="single", polarization_type="V",
                      antenna_pattern="omni", carrier_frequency=carrier_hz, device=device)


def element_gain(array: PanelArray, zenith: torch.Tensor, azimuth: torch.Tensor) -> torch.Tensor:
    """Power gain |F|^2 (linear) of the array's element towards (zenith, azimuth) in the array's LCS.

    Args:
        array: a single-polarised ``PanelArray``.
        zenith: [...] float, zenith angle in rad.  azimuth: [...] float, azimuth angle in rad (broadside 0).

    Returns:
        gain: [...] float (1 for the omni element; up to 10^0.8 for the 38.901 element at broadside).
    """
    f_theta, f_phi = array.ant_pol1.field(zenith, azimuth)
    return f_theta ** 2 + f_phi ** 2
