"""Shared pieces of the single-link channel tasks (ce, cp, pf): one group = one BS-UE link of one drop."""
from __future__ import annotations

import torch

from icwm.tasks.common import replace
from icwm.wireless import channels
from icwm.wireless.sysconfig import SystemConfig

SNAPSHOT_GAP_S = 20e-3   # spacing of a group's samples for ce/pf (past the coherence time at the seen speeds)


def link_series(cfg: SystemConfig, n_groups: int, n_time: int, rng: torch.Generator, *,
                interval_s: float | None = None, n_sc: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel time series of ``n_groups`` independent links (each user of a drop is one link).

    Args:
        interval_s: time between snapshots (default ``cfg.sampling_interval_s``).
        n_sc: number of subcarriers (default ``cfg.num_subcarriers``).

    Returns:
        h: [group, time, sc, ant] complex64; speed_kmh: [group] float32.
    """
    k = cfg.num_users
    n_drops = -(-n_groups // k)
    sub = replace(cfg, sampling_interval_s=interval_s or cfg.sampling_interval_s,
                  num_subcarriers=n_sc or cfg.num_subcarriers)
    drops = channels.generate_drops(sub, n_drops, n_time, rng)
    h = drops.h.reshape((n_drops * k,) + tuple(drops.h.shape[2:]))[:n_groups]   # [group, time, sc, ant]
    speed = drops.speed_kmh.reshape(-1)[:n_groups].float()
    return h, speed
