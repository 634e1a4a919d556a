"""FDD uplink -> downlink: the delay x beam domain and the least-squares band map fitted to earlier snapshots.

Across the duplex gap a path keeps its delay, angle and gain and only turns its phase by ``exp(-j 2 pi df tau)``.
In the delay x beam domain (inverse DFT over subcarriers, DFT over antennas) the paths are nearly sparse, so a DL
coefficient is close to a linear function of the UL coefficients at and next to the same bin, with weights set by
the link's geometry (not by its small-scale phases). With a few earlier (UL, DL) snapshots of the same link those
weights can be fitted by least squares: the classical reference of the pf task when demonstrations are given.
"""
from __future__ import annotations

import torch

from icwm.config import check
from icwm.wireless.estimation import ridge_solve


def to_delay_beam(g: torch.Tensor) -> torch.Tensor:
    """A band [..., sc, ant] -> [..., delay, beam] (unitary: inverse DFT over sc, DFT over ant)."""
    return torch.fft.ifft(torch.fft.fft(g, dim=-1, norm="ortho"), dim=-2, norm="ortho")


def from_delay_beam(g: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_delay_beam``."""
    return torch.fft.ifft(torch.fft.fft(g, dim=-2, norm="ortho"), dim=-1, norm="ortho")


def delay_taps(g: torch.Tensor, half: int) -> torch.Tensor:
    """Delay x beam grid [..., delay, beam] -> [..., delay, beam, 2 half + 1]: bins d - half .. d + half (circular)."""
    return torch.stack([torch.roll(g, s, dims=-2) for s in range(-half, half + 1)], -1)


def band_map_ls(ul_demo: torch.Tensor, dl_demo: torch.Tensor, ul: torch.Tensor, half: int = 1,
                n0: float = 1.0) -> torch.Tensor:
    """DL band of ``ul`` from the per-(delay, beam) ridge map fitted to earlier snapshots of the same link.

    Args:
        ul_demo, dl_demo: [..., k, sc, ant] complex, k >= 1 earlier snapshots (UL band, DL band).
        ul: [..., sc, ant] complex, the snapshot to predict.
        half: delay bins on each side of a bin among its regressors.
        n0: ridge, in snapshots at the query's own regressor power in the bin.

    Returns:
        [..., sc, ant] complex, the predicted DL band.
    """
    check(ul_demo.shape == dl_demo.shape and ul_demo.shape[:-3] + ul_demo.shape[-2:] == ul.shape,
          "band_map_ls(ul_demo, dl_demo, ul)", "[..., k, sc, ant], [..., k, sc, ant], [..., sc, ant]",
          (tuple(ul_demo.shape), tuple(dl_demo.shape), tuple(ul.shape)))
    return band_map_apply(*band_map_stats(ul_demo, dl_demo, half), ul, half, n0)


def band_map_stats(ul_demo: torch.Tensor, dl_demo: torch.Tensor, half: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal equations of the per-(delay, beam) band map over example snapshots (summed over them).

    Args:
        ul_demo, dl_demo: [..., k, sc, ant] complex (UL band, DL band of k snapshots of one link).

    Returns:
        gram [..., delay, beam, F, F] = sum x x^H and cross [..., delay, beam, F] = sum y conj(x), F = 2 half + 1.
    """
    x = delay_taps(to_delay_beam(ul_demo), half)                                  # [..., k, D, N, F]
    y = to_delay_beam(dl_demo)                                                     # [..., k, D, N]
    gram = torch.einsum("...kdnf,...kdng->...dnfg", x, x.conj())
    cross = torch.einsum("...kdn,...kdnf->...dnf", y, x.conj())
    return gram, cross


def band_map_apply(gram: torch.Tensor, cross: torch.Tensor, ul: torch.Tensor, half: int = 1, n0: float = 1.0
                   ) -> torch.Tensor:
    """DL band of ``ul`` [..., sc, ant] from the ridge band map of :func:`band_map_stats` (``gram`` / ``cross``
    broadcasting against ``ul``'s leading dims); ``n0`` as in :func:`band_map_ls`. Returns [..., sc, ant]."""
    xq = delay_taps(to_delay_beam(ul), half)                                       # [..., D, N, F]
    lam = n0 * xq.abs().pow(2).mean(-1) + 1e-12                                    # [..., D, N]
    coef = ridge_solve(gram, cross[..., None, :], lam)[..., 0, :]                  # [..., D, N, F]
    return from_delay_beam((coef * xq).sum(-1))
