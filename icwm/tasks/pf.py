"""pf: FDD uplink -> downlink frequency prediction.

x: ``h_ul [time, sc, ant] complex64`` (UL band, noisy at ``snr_db``), ``snr_db []``; y: ``h_dl [time, sc, ant]``
(DL band of the same link: M subcarriers starting ``DUPLEX_GAP_BANDS`` band-widths above the UL band's end).
A group is one link; its samples are snapshots ``SNAPSHOT_GAP_S`` apart.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import add_noise, channel_nmse, check_counts, nmse_report, uniform
from icwm.tasks.link_common import SNAPSHOT_GAP_S, link_series
from icwm.wireless import duplex
from icwm.wireless.sysconfig import SystemConfig

ID = "pf"
X_KEYS = ("h_ul", "snr_db")
Y_KEYS = ("h_dl",)
DUPLEX_GAP_BANDS = 1   # gap between UL and DL, in units of the M-subcarrier band


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_ul [group, sample, 1, sc, ant]``, ``snr_db [group, sample]``, ``h_dl [group, sample, 1, sc, ant]``."""
    check_counts(n_groups, n_per_group)
    m = cfg.num_subcarriers
    h, _ = link_series(cfg, n_groups, n_per_group, rng, interval_s=SNAPSHOT_GAP_S, n_sc=(2 + DUPLEX_GAP_BANDS) * m)
    h = h[:, :, None]                                                    # [group, sample, 1, sc_total, ant]
    snr_db = uniform(cfg.snr_db[0], cfg.snr_db[1], (n_groups, n_per_group), rng)
    return {"h_ul": add_noise(h[..., :m, :], snr_db, rng), "snr_db": snr_db, "h_dl": h[..., -m:, :].contiguous()}


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """NMSE (linear) [N]."""
    return channel_nmse(pred, sample, "h_dl")


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``nmse`` [N] and ``nmse_db`` [N]."""
    return nmse_report(loss(pred, sample))


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """``nearest``: DL = UL (same link, channel reused across the duplex gap); ``linear``: per time/antenna, a
    least-squares line through the UL band's response extrapolated to the DL subcarriers (noisy, for reference);
    with demonstrations (``sample`` tensors [..., pair, time, sc, ant], the query last, more than one pair)
    ``band_ls``: the per-(delay, beam) least-squares band map fitted to the demos' (UL, DL) snapshots of the link
    (``icwm.wireless.duplex.band_map_ls``). The query's label never enters it."""
    ul = sample["h_ul"]
    m = ul.shape[-2]
    f_ul = torch.arange(m, dtype=torch.float32)
    f_dl = f_ul + (1 + DUPLEX_GAP_BANDS) * m
    A = torch.stack([torch.ones(m), f_ul], -1).to(ul.dtype)           # [sc, 2]
    coef = torch.linalg.pinv(A) @ ul                                    # [..., 2, ant]
    lin = torch.stack([torch.ones(m), f_dl], -1).to(ul.dtype) @ coef  # [..., sc, ant]
    out = {"nearest": {"h_dl": ul.clone()}, "linear": {"h_dl": lin}}
    if ul.shape[-4] >= 2:
        q = ul[..., -1, :, :, :]                                                      # [..., T, sc, ant]
        ul_d, dl_d = (t[..., :-1, :, :, :].flatten(-4, -3)[..., None, :, :, :].expand(q.shape[:-2] + (-1,) * 3)
                      for t in (ul, sample["h_dl"]))                                 # [..., T, k T, sc, ant]
        band = duplex.band_map_ls(ul_d, dl_d, q)                                     # [..., T, sc, ant]
        out["band_ls"] = {"h_dl": torch.cat((ul[..., :-1, :, :, :], band[..., None, :, :, :]), -4)}
    return out
