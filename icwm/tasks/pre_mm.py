"""pre_mm: MU-MISO downlink precoding maximising the minimum SINR (max-min fairness).

x: ``h [user, ant] complex64``, ``snr_db []``; y: ``lam_p [user, 2]`` normalised optimal-structure parameters of the
optimum (bisection with uplink-downlink duality). Loss: soft-min SINR (dB) gap to the optimum.

Latent form (``cfg.form == "latent"``): one SNR per group, omitted from x (``latent_snr_db``, ``prior_snr_db``);
labels and ``sinr_opt_db`` at the true SNR; precoders are transmitted at full power (``precoding_common.pred_sinr``).
Baselines (on the query): the optimum at the true SNR (oracle), at the prior (blind), at the SNR fitted to the demos'
labels (in_context, ``maxmin.fit_snr_db``).
"""
from __future__ import annotations

import torch

from icwm.config import check
from icwm.tasks import precoding_common as pc
from icwm.tasks.common import flat, is_latent
from icwm.wireless import maxmin
from icwm.wireless.sysconfig import SystemConfig

SPEC = pc.task_spec("pre_mm", primary="min_sinr_db")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
SOFTMIN_DB = 0.5   # temperature of the soft minimum, dB


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw groups of independent drops; label = max-min optimum.

    Returns:
        dict with ``h [group, sample, user, ant] c64``, ``snr_db``, ``lam_p [group, sample, user, 2]``,
        ``sinr_opt_db [group, sample]`` (the optimal common SINR). Latent form: one SNR per group, ``snr_db``
        replaced by ``latent_snr_db``, ``prior_snr_db`` [group, sample].
    """
    h, snr_db = pc.draw_groups(cfg, n_groups, n_per_group, rng)
    p = torch.pow(10.0, snr_db / 10.0)
    sol = maxmin.maxmin_sinr(h, p)
    out = {"h": h, "snr_db": snr_db, "lam_p": sol.lam_p.float(), "sinr_opt_db": sol.sinr_db.float()}
    return pc.finish(cfg, out, n_groups, n_per_group)


def min_sinr_db(pred: dict, sample: dict) -> torch.Tensor:
    """Minimum SINR over users [N] in dB."""
    return 10.0 * torch.log10(pc.pred_sinr(pred, sample).amin(-1).clamp_min(1e-12))


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """Gap (in units of 10 dB) between the optimum and the soft-min SINR of the prediction: [N], >= about 0."""
    sinr_db = 10.0 * torch.log10(pc.pred_sinr(pred, sample).clamp_min(1e-12))
    softmin = -SOFTMIN_DB * torch.logsumexp(-sinr_db / SOFTMIN_DB, dim=-1)
    return (flat(sample["sinr_opt_db"], 0) - softmin) / 10.0


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``min_sinr_db`` [N] and ``gap_db`` [N] (optimum minus prediction, >= 0)."""
    m = min_sinr_db(pred, sample)
    return {"min_sinr_db": m, "gap_db": flat(sample["sinr_opt_db"], 0) - m}


def optimum(h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The max-min optimum: h [N, user, ant], p [N] -> W [N, ant, user]."""
    return maxmin.maxmin_sinr(h, p).W


def refine(h: torch.Tensor, lam_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A (lambda, p) guess taken to the label's solver at the design power ``p``: the max-min optimum, whose uplink
    fixed point converges to the same answer from any start, so the guess itself is not used (the model's inference
    add-on, ``model.precoding_refine``).

    Args:
        h: [..., user, ant] complex.  lam_p: [..., user, 2] normalised guess.  p: [...] design power (linear).
    Returns:
        lam_p: [..., user, 2] float32, normalised.
    """
    check(tuple(lam_p.shape[:-1]) == tuple(h.shape[:-1]) and lam_p.shape[-1] == 2, "lam_p",
          f"[..., user, 2] matching h {tuple(h.shape)}", tuple(lam_p.shape))
    return maxmin.maxmin_sinr(h, p).lam_p.float()


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """MRT, ZF, RZF and the optimum: method -> {"W": [.., ant, user]}.

    Latent form ([.., pair, ...], query last): MRT, ZF, RZF at the prior SNR and the optimum on the query as
    ``oracle``, ``blind``, ``in_context`` (``precoding_common.latent_baselines``)."""
    if is_latent(sample):
        return pc.latent_baselines(sample, optimum, maxmin.fit_snr_db)
    out = pc.classical(sample)
    h, p = pc.unpack({}, sample)
    W = optimum(h, p)
    out["optimal"] = {"W": W.reshape(sample["snr_db"].shape + tuple(W.shape[-2:]))}
    return out
