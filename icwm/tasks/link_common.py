"""Shared pieces of the single-link channel tasks (ce, cp, pf): one group = one BS-UE link of one drop.

Latent form (docs/contracts.md "Latent form"): the SNR is drawn once per group and leaves x for ``latent_snr_db``;
``cfg.latent.oracle_snapshots`` further snapshots continue each link's trajectory past the episode's samples (same
drop, large-scale parameters and clusters) and feed the oracle's statistics, which no other method sees.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import episode_scalar, latent_fields, replace, uniform
from icwm.tasks.taskspec import TaskSpec
from icwm.wireless.sysconfig import SystemConfig

SNAPSHOT_GAP_S = 20e-3   # spacing of a group's samples for ce/pf (past the coherence time at the seen speeds)


def link_spec(task_id: str, x: str, y: str, context: bool, trivial: str) -> TaskSpec:
    """The spec of a link task: x ``<x> [time, sc, ant] c64``, ``snr_db []``; y ``<y> [time, sc, ant] c64``; the
    latent form's pairs omit the SNR (theta ``snr_db``); primary: the mean NMSE in dB, smaller is better;
    ``trivial``: the channel estimate from the query alone (also the learned baselines' first guess)."""
    return TaskSpec(id=task_id, x={x: (3, "c"), "snr_db": (0, "f")}, y={y: (3, "c")}, primary="nmse_mean_db",
                    direction=-1, latent_x=("snr_db",), latent=("snr_db",), context=context, trivial=trivial,
                    first_guess=trivial)


def link_series(cfg: SystemConfig, n_groups: int, n_time: int, rng: torch.Generator, *,
                interval_s: float | None = None, n_sc: int | None = None, fast: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel time series of ``n_groups`` independent links (each user of a drop is one link).

    Args:
        interval_s: time between snapshots (default ``cfg.sampling_interval_s``).
        n_sc: number of subcarriers (default ``cfg.num_subcarriers``).
        fast: TR 38.901 step 11 through ``icwm.wireless.fastcoef`` (Sionna's numbers within 1e-5, faster); None:
            the system's ``fast`` flag (default on).

    Returns:
        h: [group, time, sc, ant] complex64; speed_kmh: [group] float32.
    """
    from icwm.wireless import channels   # the channel simulator (Sionna) loads on first use, not with the spec
    k = cfg.num_users
    n_drops = -(-n_groups // k)
    sub = replace(cfg, sampling_interval_s=interval_s or cfg.sampling_interval_s,
                  num_subcarriers=n_sc or cfg.num_subcarriers)
    drops = channels.generate_drops(sub, n_drops, n_time, rng, fast=fast)
    h = drops.h.reshape((n_drops * k,) + tuple(drops.h.shape[2:]))[:n_groups]   # [group, time, sc, ant]
    speed = drops.speed_kmh.reshape(-1)[:n_groups].float()
    return h, speed


def is_latent_form(cfg: SystemConfig) -> bool:
    """True when ``cfg`` generates latent-form samples."""
    return cfg.form == "latent"


def oracle_snapshots(cfg: SystemConfig) -> int:
    """Further snapshots per link for the oracle's statistics: ``cfg.latent.oracle_snapshots`` (latent form), else 0."""
    return cfg.latent.oracle_snapshots if is_latent_form(cfg) else 0


def link_series_oracle(cfg: SystemConfig, n_groups: int, n_time: int, rng: torch.Generator, **kw
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``link_series`` of the episode's ``n_time`` snapshots, continued by ``oracle_snapshots(cfg)`` more in the
    same call (same links, the trajectory runs on). The given form calls ``link_series`` exactly as before; the
    latent form uses the fast coefficient path (equal to Sionna within 1e-5, tests/wireless/test_fastcoef.py).

    Returns:
        h: [group, time, sc, ant]; extra: [group, n_extra, sc, ant] or None (no oracle); speed_kmh: [group].
    """
    n_extra = oracle_snapshots(cfg)
    if not is_latent_form(cfg):
        h, speed = link_series(cfg, n_groups, n_time, rng, **kw)
        return h, None, speed
    h, speed = link_series(cfg, n_groups, n_time + n_extra, rng, fast=True, **kw)
    extra = h[:, n_time:].contiguous() if n_extra > 0 else None
    return h[:, :n_time].contiguous(), extra, speed


def draw_snr(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> torch.Tensor:
    """SNR in dB [group, sample]: uniform per sample (given form) or once per group (latent form) in ``cfg.snr_db``."""
    if is_latent_form(cfg):
        return episode_scalar(cfg.snr_db, n_groups, n_per_group, rng)
    return uniform(cfg.snr_db[0], cfg.snr_db[1], (n_groups, n_per_group), rng)


def snr_fields(cfg: SystemConfig, snr_db: torch.Tensor) -> dict[str, torch.Tensor]:
    """The x field ``snr_db`` (given form) or ``latent_snr_db`` / ``prior_snr_db`` (latent form): [group, sample]."""
    if is_latent_form(cfg):
        return latent_fields("snr_db", snr_db, cfg.snr_db)
    return {"snr_db": snr_db}


def noise_variance(snr_db: torch.Tensor) -> torch.Tensor:
    """Noise variance ``10^(-snr_db / 10)`` of the unit-power channel convention (same shape as ``snr_db``)."""
    return torch.pow(10.0, -snr_db / 10.0)
