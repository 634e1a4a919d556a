"""ce: OFDM channel estimation from comb pilots (every 4th subcarrier).

x: ``h_ls [time, pilot_sc, ant] complex64`` (noisy LS estimates at the pilots), ``snr_db []``;
y: ``h [time, sc, ant] complex64``. A group is one link; its samples are snapshots ``SNAPSHOT_GAP_S`` apart.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import add_noise, channel_nmse, check_counts, nmse_report, uniform
from icwm.tasks.link_common import SNAPSHOT_GAP_S, link_series
from icwm.wireless import estimation
from icwm.wireless.sysconfig import SystemConfig

ID = "ce"
X_KEYS = ("h_ls", "snr_db")
Y_KEYS = ("h",)
PILOT_SPACING = 4


def pilot_indices(n_sc: int) -> torch.Tensor:
    """Comb pilot subcarriers [pilot_sc] int64: 0, 4, 8, ..."""
    return torch.arange(0, n_sc, PILOT_SPACING)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_ls [group, sample, 1, pilot_sc, ant]``, ``snr_db [group, sample]``, ``h [group, sample, 1, sc, ant]``,
    ``pilot_idx [group, sample, pilot_sc]``."""
    check_counts(n_groups, n_per_group)
    h, _ = link_series(cfg, n_groups, n_per_group, rng, interval_s=SNAPSHOT_GAP_S)
    h = h[:, :, None]                                    # [group, sample, time=1, sc, ant]
    pilots = pilot_indices(h.shape[-2])
    snr_db = uniform(cfg.snr_db[0], cfg.snr_db[1], (n_groups, n_per_group), rng)
    h_ls = add_noise(h[..., pilots, :], snr_db, rng)
    return {"h_ls": h_ls, "snr_db": snr_db, "h": h,
            "pilot_idx": pilots.expand(n_groups, n_per_group, -1).contiguous()}


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """NMSE (linear) [N]."""
    return channel_nmse(pred, sample, "h")


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``nmse`` [N] linear and ``nmse_db`` [N]."""
    return nmse_report(loss(pred, sample))


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """LS + linear interpolation, and LMMSE with the frequency covariance estimated from the episode's DEMOS.

    ``sample`` tensors carry leading dims [..., pair] with the query last; the query's label never enters the
    covariance (only the query position is meant to be scored). With no demos (one pair) only LS is returned.
    """
    h_ls, h = sample["h_ls"], sample["h"]
    n_sc = h.shape[-2]
    pilots = pilot_indices(n_sc)
    out = {"ls_linear": {"h": estimation.ls_interp(h_ls, pilots, n_sc)}}
    if h.shape[-4] < 2:
        return out
    demos = h[..., :-1, :, :, :]                                                         # [..., k, time, sc, ant]
    cov = estimation.freq_covariance(demos.movedim(-1, -2).reshape(h.shape[:-4] + (-1, n_sc)))  # [..., sc, sc]
    noise_var = torch.pow(10.0, -sample["snr_db"] / 10.0)                                  # [..., pair]
    cov_b = cov[..., None, :, :].expand(h.shape[:-3] + (n_sc, n_sc))
    out["lmmse"] = {"h": estimation.lmmse_estimate(h_ls, pilots, n_sc, cov_b[..., None, :, :], noise_var[..., None])}
    return out
