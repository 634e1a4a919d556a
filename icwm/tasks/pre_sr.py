"""pre_sr: MU-MISO downlink precoding maximising the sum rate.

x: ``h [user, ant] complex64``, ``snr_db []``; y: ``lam_p [user, 2]`` the (lambda, p) optimal-structure parameters
(Bjornson et al. 2014) of a converged WMMSE (RZF init, ``LABEL_ITERS``), both columns normalised to sum 1 over users.
The loss is unsupervised: minus the sum rate reached through the optimal structure (Gram space, differentiable), relative to WMMSE's.

Latent form (``cfg.form == "latent"``): one SNR per group, omitted from x (``latent_snr_db``, ``prior_snr_db``);
labels and reference at the true SNR; precoders are transmitted at full power (``precoding_common.pred_sinr``).
Baselines (on the query): WMMSE-``LATENT_ITERS`` at the true SNR (oracle), at the prior (blind), at the SNR fitted
to the demos' labels (in_context, ``precoding.fit_snr_db``).
"""
from __future__ import annotations

import torch

from icwm.tasks import precoding_common as pc
from icwm.tasks.common import flat, is_latent
from icwm.wireless import precoding
from icwm.wireless.sysconfig import SystemConfig

SPEC = pc.task_spec("pre_sr", primary="sum_rate")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
WMMSE_ITERS = 20          # the reference the metric compares against (WMMSE-20)
LABEL_ITERS = 100         # the (lambda, p) label is taken from a converged WMMSE (structure exact at a fixed point)
LATENT_ITERS = LABEL_ITERS   # latent oracle / blind / in_context: the label's solver (WMMSE-20 is far from
# converged at high SNR and full load, where it loses to the same 20 iterations designed at a lower SNR)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw ``n_groups`` groups of ``n_per_group`` independent drops of one configuration.

    Returns:
        dict with ``h [group, sample, user, ant] c64``, ``snr_db [group, sample]``, ``lam_p [group, sample, user, 2]``,
        ``rate_wmmse [group, sample]`` (bit/s/Hz of WMMSE-20 with RZF init: the reference). Latent form: one SNR
        per group, ``snr_db`` replaced by ``latent_snr_db``, ``prior_snr_db`` [group, sample].
    """
    h, snr_db = pc.draw_groups(cfg, n_groups, n_per_group, rng)
    p = torch.pow(10.0, snr_db / 10.0)
    # one WMMSE run: its iterate 20 is the WMMSE-20 reference, its converged iterate gives the label
    W_label, history = precoding.wmmse(h, p, iters=LABEL_ITERS, init="rzf", return_history=True)
    out = {"h": h, "snr_db": snr_db, "lam_p": pc.structure_of(h, W_label, p),
           "rate_wmmse": history[..., WMMSE_ITERS].float()}
    return pc.finish(cfg, out, n_groups, n_per_group)


def sum_rate(pred: dict, sample: dict) -> torch.Tensor:
    """Sum rate [N] (bit/s/Hz) of a prediction (``lam_p`` or ``W``)."""
    return torch.log2(1.0 + pc.pred_sinr(pred, sample)).sum(-1)


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """Minus the sum rate relative to the WMMSE label's: [N] (about -1 at WMMSE quality)."""
    return -sum_rate(pred, sample) / flat(sample["rate_wmmse"], 0).clamp_min(1e-6)


def supervised_loss(pred: dict, sample: dict) -> torch.Tensor:
    """Warm-up loss: MSE to the WMMSE (lambda, p) labels, [N]."""
    return (flat(pred["lam_p"], 2) - flat(sample["lam_p"], 2)).pow(2).mean((-2, -1))


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``sum_rate`` [N] bit/s/Hz and ``rate_ratio`` [N] (fraction of WMMSE-20's sum rate)."""
    rate = sum_rate(pred, sample)
    return {"sum_rate": rate, "rate_ratio": rate / flat(sample["rate_wmmse"], 0)}


def wmmse20(h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The reference solver, WMMSE-20 with RZF init: h [N, user, ant], p [N] -> W [N, ant, user]."""
    return precoding.wmmse(h, p, iters=WMMSE_ITERS, init="rzf")


def wmmse_latent(h: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The latent baselines' solver, WMMSE-``LATENT_ITERS`` with RZF init: h [N, user, ant], p [N] -> W."""
    return precoding.wmmse(h, p, iters=LATENT_ITERS, init="rzf")


def refine(h: torch.Tensor, lam_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A (lambda, p) guess taken to the label's solver: WMMSE-``LABEL_ITERS`` started from the guess's precoder at
    the design power ``p``, returned in the label format (the model's inference add-on, ``model.precoding_refine``).

    Args:
        h: [..., user, ant] complex.  lam_p: [..., user, 2] normalised guess.  p: [...] design power (linear).
    Returns:
        lam_p: [..., user, 2] float32, normalised.
    """
    return pc.structure_of(h, precoding.wmmse_from_structure(h, lam_p, p, LABEL_ITERS), p)


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """MRT, ZF, RZF and WMMSE-20 (RZF init) precoders: method -> {"W": [.., ant, user]}.

    Latent form ([.., pair, ...], query last): MRT, ZF, RZF at the prior SNR and WMMSE-``LATENT_ITERS`` on the
    query as ``oracle``, ``blind``, ``in_context`` (``precoding_common.latent_baselines``)."""
    if is_latent(sample):
        return pc.latent_baselines(sample, wmmse_latent, precoding.fit_snr_db)
    out = pc.classical(sample)
    h, p = pc.unpack({}, sample)
    W = wmmse20(h, p)
    out["wmmse"] = {"W": W.reshape(sample["snr_db"].shape + tuple(W.shape[-2:]))}
    return out
