"""Shared pieces of the two precoding tasks (pre_sr, pre_mm): channel draws, precoder evaluation and, for the
latent form (docs/contracts.md "Latent form"), the SNR-latent fields and the oracle / blind / in-context baselines."""
from __future__ import annotations

from typing import Callable

import torch

from icwm.config import check
from icwm.tasks.common import (check_counts, episode_scalar, flat, given_or_latent, group_split, is_latent,
                               latent_fields, replace, snr_to_power, uniform)
from icwm.tasks.taskspec import TaskSpec
from icwm.wireless import precoding
from icwm.wireless.sysconfig import SystemConfig

Solver = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]          # (h [N, user, ant], p [N]) -> W [N, ant, user]
Fit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]             # (h, lam_p demos) -> snr_db [...]


def task_spec(task_id: str, primary: str) -> TaskSpec:
    """The spec both precoding tasks share: x ``h [user, ant] c64``, ``snr_db []``; y ``lam_p [user, 2] f32``; the
    latent form's pairs omit the SNR (theta ``snr_db``); ``primary`` larger is better; baselines read the query alone;
    trivial: MRT."""
    return TaskSpec(id=task_id, x={"h": (2, "c"), "snr_db": (0, "f")}, y={"lam_p": (2, "f")}, primary=primary,
                    direction=1, latent_x=("snr_db",), latent=("snr_db",), trivial="mrt")


def _channels(cfg: SystemConfig, n: int, rng: torch.Generator) -> torch.Tensor:
    """``n`` narrow-band MU-MISO channels of ``cfg``: [n, user, ant] complex64 (path-loss normalised)."""
    from icwm.wireless import channels   # the channel simulator (Sionna) loads on first use, not with the spec
    check(cfg.num_users <= cfg.num_ant, "num_users",
          f"<= the number of BS antennas ({cfg.num_ant}) for the precoding tasks", cfg.num_users)
    drops = channels.generate_drops(replace(cfg, num_subcarriers=1), n, 1, rng)
    return drops.h[:, :, 0, 0, :]  # [n, user, ant]


def draw(cfg: SystemConfig, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` narrow-band MU-MISO channels of ``cfg`` and per-sample SNRs.

    Returns:
        h: [n, user, ant] complex64 (path-loss normalised, noise variance 1).
        snr_db: [n] float32, uniform in ``cfg.snr_db`` (power budget p = 10^(snr_db/10)).
    """
    h = _channels(cfg, n, rng)
    snr_db = uniform(cfg.snr_db[0], cfg.snr_db[1], (n,), rng)
    return h, snr_db


def draw_groups(cfg: SystemConfig, n_groups: int, n_per_group: int,
                rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``draw`` for ``n_groups x n_per_group`` samples: one SNR per sample (given form, exactly ``draw``) or one
    per group (latent form).

    Returns:
        h: [n, user, ant] complex64.  snr_db: [n] float32 (n = n_groups * n_per_group, group-major).
    """
    check_counts(n_groups, n_per_group)
    if cfg.form != "latent":
        return draw(cfg, n_groups * n_per_group, rng)
    h = _channels(cfg, n_groups * n_per_group, rng)
    return h, episode_scalar(cfg.snr_db, n_groups, n_per_group, rng).reshape(-1)


def finish(cfg: SystemConfig, out: dict[str, torch.Tensor], n_groups: int,
           n_per_group: int) -> dict[str, torch.Tensor]:
    """Split ``[n, ...]`` fields into ``[group, sample, ...]``; the latent form replaces ``snr_db`` by
    ``latent_snr_db`` and ``prior_snr_db`` (the centre of ``cfg.snr_db``)."""
    out = {k: group_split(v, n_groups, n_per_group) for k, v in out.items()}
    if cfg.form == "latent":
        out.update(latent_fields("snr_db", out.pop("snr_db"), cfg.snr_db))
    return out


def unpack(pred: dict, sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened channel and (true) power budget: h [N, user, ant], p [N]."""
    return flat(sample["h"], 2), snr_to_power(flat(given_or_latent(sample, "snr_db"), 0))


def design_power(sample: dict) -> torch.Tensor:
    """Power [N] a method without the SNR designs for: the true one (given form) or the prior (latent form)."""
    return snr_to_power(flat(sample["prior_snr_db" if is_latent(sample) else "snr_db"], 0))


def pred_sinr(pred: dict, sample: dict) -> torch.Tensor:
    """SINRs [N, user] of a prediction given either as ``W`` [.., ant, user] or as ``lam_p`` [.., user, 2].

    Latent form: ``W`` is scaled to the full budget; ``lam_p`` is rendered at the prediction's ``snr_db`` (else at
    ``prior_snr_db``) and then scaled to the full budget. The SINRs are those at the true noise level.
    """
    h, p = unpack(pred, sample)
    latent = is_latent(sample)
    if "W" in pred:
        W = flat(pred["W"], 2)
        return precoding.sinr(h, precoding.scale_to_power(h, W, p) if latent else W)
    if not latent:
        return precoding.structure_sinr(precoding.gram(h), flat(pred["lam_p"], 2), p)
    p_design = snr_to_power(flat(pred["snr_db"], 0)) if "snr_db" in pred else design_power(sample)
    return precoding.structure_sinr_at(precoding.gram(h), flat(pred["lam_p"], 2), p_design, p)


def _shaped(W: torch.Tensor, sample: dict) -> dict[str, torch.Tensor]:
    """{"W": W [N, ant, user] reshaped to the samples' leading shape [.., ant, user]}."""
    return {"W": W.reshape(tuple(sample["h"].shape[:-2]) + tuple(W.shape[-2:]))}


def _at_query(W: torch.Tensor, sample: dict) -> dict[str, torch.Tensor]:
    """{"W": [.., pair, ant, user]} holding the query precoders ``W: [.., ant, user]`` at the last pair, NaN at the
    demonstrations (the latent solvers are evaluated on the query only)."""
    out = torch.full(tuple(sample["h"].shape[:-2]) + tuple(W.shape[-2:]), float("nan"), dtype=W.dtype)
    out[..., -1, :, :] = W
    return {"W": out}


def classical(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Linear precoders MRT, ZF (water-filled), RZF on the samples: method -> {"W": [.., ant, user]}.

    Designed at ``design_power`` (latent form: the prior SNR; the metric transmits them at full power)."""
    h, p = flat(sample["h"], 2), design_power(sample)
    return {name: _shaped(fn(h, p), sample)
            for name, fn in (("mrt", precoding.mrt), ("zf", precoding.zf), ("rzf", precoding.rzf))}


def in_context_snr_db(sample: dict, fit: Fit) -> torch.Tensor:
    """The episodes' SNR [..] fitted to the demonstrations' (h, lam_p) (every pair but the last, the query);
    ``prior_snr_db`` without demonstrations or where they carry no information (``fit`` NaN). Reads neither
    ``latent_*`` nor the query's label.

    Args:
        sample: latent episodes ``h [.., pair, user, ant]``, ``lam_p [.., pair, user, 2]``, ``prior_snr_db [.., pair]``.
    """
    check(sample["h"].dim() >= 4, "h", "latent episodes [.., pair, user, ant] (query last)", tuple(sample["h"].shape))
    prior = sample["prior_snr_db"][..., -1]
    if sample["h"].shape[-3] < 2:
        return prior
    est = fit(sample["h"][..., :-1, :, :], sample["lam_p"][..., :-1, :, :])
    return torch.where(torch.isnan(est), prior, est.to(prior.dtype))


def latent_baselines(sample: dict, solve: Solver, fit: Fit) -> dict[str, dict[str, torch.Tensor]]:
    """Baselines of a latent episode batch [.., pair, ...] (query last): the linear precoders (at the prior, every
    pair) and ``solve`` on the query (NaN at the demos) at the true SNR (``oracle``), at ``prior_snr_db``
    (``blind``) and at the SNR ``fit`` to the demos (``in_context``; blind without demos). Separate solver calls:
    an iterative solver's stopping rule over its batch must not let the oracle's SNR reach the other two.

    Returns:
        method -> {"W": [.., pair, ant, user]}.
    """
    out = classical(sample)
    lead = tuple(sample["h"].shape[:-3])                                               # [..] (no pair dim)
    q = {"h": sample["h"][..., -1, :, :], **{k: sample[k][..., -1] for k in ("prior_snr_db", "latent_snr_db")}}
    h, p_true = unpack({}, q)
    p_ic = snr_to_power(flat(in_context_snr_db(sample, fit), 0))
    for name, p in (("oracle", p_true), ("blind", design_power(q)), ("in_context", p_ic)):
        W = solve(h, p)                                                                # [N, ant, user]
        out[name] = _at_query(W.reshape(lead + tuple(W.shape[-2:])), sample)
    return out


def structure_of(h: torch.Tensor, W: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Normalised optimal-structure label lam_p [..., user, 2] float32 of precoders W [..., ant, user]."""
    return precoding.structure_params(h, W, p).float()


__all__ = ["task_spec", "draw", "draw_groups", "finish", "unpack", "design_power", "pred_sinr", "classical",
           "in_context_snr_db", "latent_baselines", "structure_of", "check_counts"]
