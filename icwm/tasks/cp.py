"""cp: channel prediction in time, T_IN = 16 past snapshots -> T_OUT = 4 future snapshots.

x: ``h_hist [t_in, sc, ant] complex64`` (noisy history at ``snr_db``), ``snr_db []``; y: ``h_fut [t_out, sc, ant]``.
A group is one link (one UE trajectory); its samples are consecutive, non-overlapping windows of that trajectory.

Latent form: the SNR is one per group and absent from x (``latent_snr_db``); with ``cfg.latent.oracle_snapshots``
> 0, ``oracle_h_fut`` is the Wiener prediction of every pair (per DFT beam, 16 -> 4) from the space-time statistics
of the trajectory's further snapshots (sliding-window covariance per beam) and the true noise variance.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import ORACLE_PREFIX, add_noise, check_counts, flat, is_latent
from icwm.tasks.link_common import draw_snr, link_series_oracle, link_spec, noise_variance, snr_fields
from icwm.wireless import metrics, prediction
from icwm.wireless.estimation import ridge_solve
from icwm.wireless.sysconfig import SystemConfig

SPEC = link_spec("cp", x="h_hist", y="h_fut", context=False, trivial="repeat_last")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
T_IN, T_OUT = 16, 4
PER_BEAM = True      # oracle and in-context window predictors: one map per DFT beam (False: one per link)
PRIOR_ROWS = 16 * T_IN  # in-context fit: weight of the query's own AR predictor, in (window, subcarrier) rows


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_hist [group, sample, t_in, sc, ant]``, ``snr_db [group, sample]``, ``h_fut [group, sample, t_out,
    sc, ant]``, ``speed_kmh [group, sample]``; latent form: ``latent_snr_db`` / ``prior_snr_db`` instead of
    ``snr_db`` and, with oracle snapshots, ``oracle_h_fut [group, sample, t_out, sc, ant]``."""
    check_counts(n_groups, n_per_group)
    win = T_IN + T_OUT
    h, extra, speed = link_series_oracle(cfg, n_groups, n_per_group * win, rng)
    h = h.reshape((n_groups, n_per_group, win) + tuple(h.shape[-2:]))   # [group, sample, time, sc, ant]
    snr_db = draw_snr(cfg, n_groups, n_per_group, rng)
    out = {"h_hist": add_noise(h[:, :, :T_IN], snr_db, rng), **snr_fields(cfg, snr_db),
           "h_fut": h[:, :, T_IN:].contiguous(), "speed_kmh": speed[:, None].expand(n_groups, n_per_group).contiguous()}
    if extra is not None:
        out[ORACLE_PREFIX + "h_fut"] = wiener_pairs(out["h_hist"], extra, noise_variance(snr_db[:, 0]))
    return out


def wiener_pairs(h_hist: torch.Tensor, series: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
    """Wiener prediction of every pair from the window covariance of a further clean series of the same link.

    Args:
        h_hist: [..., pair, t_in, sc, ant] noisy histories; series: [..., time, sc, ant]; nv: [...] noise variance.

    Returns:
        [..., pair, t_out, sc, ant] complex.
    """
    c = prediction.window_covariance(series, T_IN + T_OUT, PER_BEAM)               # [..., beam, T, T]
    c_hh, c_fh = c[..., :T_IN, :T_IN], c[..., T_IN:, :T_IN]
    coef = ridge_solve(c_hh, c_fh, nv[..., None].expand(c_hh.shape[:-2]))          # [..., beam, t_out, t_in]
    return prediction.window_predict(coef[..., None, :, :, :], h_hist)


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
    """Repeat-last, autoregressive (Yule-Walker, order 4) and vector Prony predictors from the noisy history.

    Latent samples add ``oracle`` (the stored ``oracle_h_fut``, when present), ``blind`` = ``ar`` and
    ``in_context``: :func:`in_context_predict` (blind with no demos). None of them reads an SNR.
    """
    hist = sample["h_hist"]
    out = {"repeat_last": {"h_fut": prediction.repeat_last(hist, T_OUT)},
           "ar": {"h_fut": prediction.ar_predict(hist, T_OUT)},
           "prony": {"h_fut": prediction.prony_predict(hist, T_OUT)}}
    if not is_latent(sample):
        return out
    out["blind"] = out["in_context"] = out["ar"]
    if ORACLE_PREFIX + "h_fut" in sample:
        out["oracle"] = {"h_fut": sample[ORACLE_PREFIX + "h_fut"]}
    if hist.shape[-4] >= 2:
        out["in_context"] = {"h_fut": in_context_predict(hist, sample["h_fut"])}
    return out


def in_context_predict(h_hist: torch.Tensor, h_fut: torch.Tensor) -> torch.Tensor:
    """Window predictor fitted by least squares on the demos' (noisy history, future) windows, per beam and shrunk
    towards the query's own AR predictor (blind; weight ``PRIOR_ROWS`` regression rows against the demos' k x sc),
    applied to the query's history; the demos get the AR prediction (only the query is scored; its label is unused).

    Args:
        h_hist: [..., pair, t_in, sc, ant]; h_fut: [..., pair, t_out, sc, ant], pair >= 2.

    Returns:
        [..., pair, t_out, sc, ant] complex.
    """
    gram, cross = prediction.window_stats(h_hist[..., :-1, :, :, :], h_fut[..., :-1, :, :, :], PER_BEAM)
    query = h_hist[..., -1, :, :, :]
    prior = prediction.ar_window_map(query, T_OUT)[..., None, :, :]                   # [..., 1, t_out, t_in]
    shrink = PRIOR_ROWS / ((h_hist.shape[-4] - 1) * h_hist.shape[-2])
    coef = prediction.window_fit(gram, cross, prior, shrink)                          # [..., beam, t_out, t_in]
    pred = prediction.window_predict(coef, query)
    return torch.cat((prediction.ar_predict(h_hist[..., :-1, :, :, :], T_OUT), pred[..., None, :, :, :]), -4)
