"""cp: channel prediction in time, T_IN = 16 past snapshots -> T_OUT = 4 future snapshots.

x: ``h_hist [t_in, sc, ant] complex64`` (noisy history at ``snr_db``), ``snr_db []``; y: ``h_fut [t_out, sc, ant]``.
A group is one link (one UE trajectory); its samples are consecutive, non-overlapping windows of that trajectory.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import add_noise, check_counts, flat, uniform
from icwm.tasks.link_common import link_series
from icwm.wireless import metrics, prediction
from icwm.wireless.sysconfig import SystemConfig

ID = "cp"
X_KEYS = ("h_hist", "snr_db")
Y_KEYS = ("h_fut",)
T_IN, T_OUT = 16, 4


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_hist [group, sample, t_in, sc, ant]``, ``snr_db [group, sample]``, ``h_fut [group, sample, t_out,
    sc, ant]``, ``speed_kmh [group, sample]``."""
    check_counts(n_groups, n_per_group)
    win = T_IN + T_OUT
    h, speed = link_series(cfg, n_groups, n_per_group * win, rng)
    h = h.reshape((n_groups, n_per_group, win) + tuple(h.shape[-2:]))   # [group, sample, time, sc, ant]
    snr_db = uniform(cfg.snr_db[0], cfg.snr_db[1], (n_groups, n_per_group), rng)
    return {"h_hist": add_noise(h[:, :, :T_IN], snr_db, rng), "snr_db": snr_db, "h_fut": h[:, :, T_IN:].contiguous(),
            "speed_kmh": speed[:, None].expand(n_groups, n_per_group).contiguous()}


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """NMSE (linear) over the whole future block [N]."""
    return metrics.nmse(flat(pred["h_fut"], 3), flat(sample["h_fut"], 3), dims=(-3, -2, -1))


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``nmse`` [N], ``nmse_db`` [N] and per-horizon ``nmse_db_t{i}`` [N]."""
    p, t = flat(pred["h_fut"], 3), flat(sample["h_fut"], 3)
    e = metrics.nmse(p, t, dims=(-3, -2, -1))
    out = {"nmse": e, "nmse_db": 10.0 * torch.log10(e.clamp_min(1e-12))}
    per_t = metrics.nmse(p, t, dims=(-2, -1))                                # [N, t_out]
    for i in range(per_t.shape[-1]):
        out[f"nmse_db_t{i + 1}"] = 10.0 * torch.log10(per_t[:, i].clamp_min(1e-12))
    return out


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Repeat-last, autoregressive (Yule-Walker, order 4) and vector Prony predictors from the noisy history."""
    hist = sample["h_hist"]
    return {"repeat_last": {"h_fut": prediction.repeat_last(hist, T_OUT)},
            "ar": {"h_fut": prediction.ar_predict(hist, T_OUT)},
            "prony": {"h_fut": prediction.prony_predict(hist, T_OUT)}}
