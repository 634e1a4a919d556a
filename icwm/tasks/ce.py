"""ce: OFDM channel estimation from comb pilots (every 4th subcarrier).

x: ``h_ls [time, pilot_sc, ant] complex64`` (noisy LS estimates at the pilots), ``snr_db []``;
y: ``h [time, sc, ant] complex64``. A group is one link; its samples are snapshots ``SNAPSHOT_GAP_S`` apart.

Latent form: the SNR is one per group and absent from x (``latent_snr_db``); with ``cfg.latent.oracle_snapshots``
> 0, ``oracle_h`` is the LMMSE estimate of every pair with the link's frequency covariance (from the further
snapshots, pooled over antennas) and the true noise variance.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import ORACLE_PREFIX, add_noise, channel_nmse, check_counts, is_latent, nmse_report
from icwm.tasks.link_common import (SNAPSHOT_GAP_S, draw_snr, link_series_oracle, link_spec, noise_variance,
                                    snr_fields)
from icwm.wireless import estimation
from icwm.wireless.sysconfig import SystemConfig

SPEC = link_spec("ce", x="h_ls", y="h", context=True, trivial="ls_linear")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
PILOT_SPACING = 4


def pilot_indices(n_sc: int) -> torch.Tensor:
    """Comb pilot subcarriers [pilot_sc] int64: 0, 4, 8, ..."""
    return torch.arange(0, n_sc, PILOT_SPACING)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_ls [group, sample, 1, pilot_sc, ant]``, ``snr_db [group, sample]``, ``h [group, sample, 1, sc, ant]``,
    ``pilot_idx [group, sample, pilot_sc]``; latent form: ``latent_snr_db`` / ``prior_snr_db`` [group, sample] instead
    of ``snr_db`` and, with oracle snapshots, ``oracle_h [group, sample, 1, sc, ant]``."""
    check_counts(n_groups, n_per_group)
    h, extra, _ = link_series_oracle(cfg, n_groups, n_per_group, rng, interval_s=SNAPSHOT_GAP_S)
    h = h[:, :, None]                                    # [group, sample, time=1, sc, ant]
    pilots = pilot_indices(h.shape[-2])
    snr_db = draw_snr(cfg, n_groups, n_per_group, rng)
    h_ls = add_noise(h[..., pilots, :], snr_db, rng)
    out = {"h_ls": h_ls, **snr_fields(cfg, snr_db), "h": h,
           "pilot_idx": pilots.expand(n_groups, n_per_group, -1).contiguous()}
    if extra is not None:
        cov = estimation.freq_covariance_pooled(extra)                     # [group, sc, sc]
        out[ORACLE_PREFIX + "h"] = lmmse_pairs(h_ls, cov, noise_variance(snr_db[:, :1]))
    return out


def lmmse_pairs(h_ls: torch.Tensor, cov: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
    """LMMSE estimate of every pair of an episode with one covariance and noise variance per episode.

    Args:
        h_ls: [..., pair, time, pilot_sc, ant]; cov: [..., sc, sc]; nv: [..., 1] noise variance.

    Returns:
        [..., pair, time, sc, ant] complex.
    """
    pilots = pilot_indices(cov.shape[-1])
    return estimation.lmmse_estimate(h_ls, pilots, cov.shape[-1], cov[..., None, None, :, :], nv[..., None])


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
    Latent samples: :func:`latent_baselines`.
    """
    if is_latent(sample):
        return latent_baselines(sample)
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


def latent_baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Latent form: ``oracle`` (the stored ``oracle_h``, when present), ``blind`` = ``ls_linear`` (LS + linear
    interpolation) and ``in_context``: LMMSE with the demos' sample covariance (from their labels ``h``, pooled over
    demos and antennas) and their noise estimate ``mean |h_ls - h at the pilots|^2``; with no demos, blind."""
    h_ls, h = sample["h_ls"], sample["h"]
    blind = {"h": estimation.ls_interp(h_ls, pilot_indices(h.shape[-2]), h.shape[-2])}
    out = {"blind": blind, "ls_linear": blind, "in_context": blind}
    if ORACLE_PREFIX + "h" in sample:
        out["oracle"] = {"h": sample[ORACLE_PREFIX + "h"]}
    if h.shape[-4] >= 2:
        out["in_context"] = {"h": lmmse_pairs(h_ls, *demo_statistics(h_ls, h))}
    return out


def demo_statistics(h_ls: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The demos' frequency covariance [..., sc, sc] and noise variance [..., 1] (the query, last pair, unused).

    Args:
        h_ls: [..., pair, time, pilot_sc, ant]; h: [..., pair, time, sc, ant] with pair >= 2.
    """
    demos = h[..., :-1, :, :, :].flatten(-4, -3)                                   # [..., k * time, sc, ant]
    cov = estimation.freq_covariance_pooled(demos)
    nv = estimation.noise_var_at_pilots(h_ls[..., :-1, :, :, :].flatten(-4, -3),
                                        demos[..., pilot_indices(h.shape[-2]), :])   # [...]
    return cov, nv[..., None]
