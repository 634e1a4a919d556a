"""Shared pieces of the two precoding tasks (pre_sr, pre_mm): channel draws and precoder evaluation."""
from __future__ import annotations

import torch

from icwm.config import check
from icwm.tasks.common import check_counts, flat, replace, snr_to_power, uniform
from icwm.wireless import channels, precoding
from icwm.wireless.sysconfig import SystemConfig

X_KEYS = ("h", "snr_db")


def draw(cfg: SystemConfig, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` narrow-band MU-MISO channels of ``cfg`` and per-sample SNRs.

    Returns:
        h: [n, user, ant] complex64 (path-loss normalised, noise variance 1).
        snr_db: [n] float32, uniform in ``cfg.snr_db`` (power budget p = 10^(snr_db/10)).
    """
    check(cfg.num_users <= cfg.num_ant, "num_users",
          f"<= the number of BS antennas ({cfg.num_ant}) for the precoding tasks", cfg.num_users)
    drops = channels.generate_drops(replace(cfg, num_subcarriers=1), n, 1, rng)
    h = drops.h[:, :, 0, 0, :]  # [n, user, ant]
    snr_db = uniform(cfg.snr_db[0], cfg.snr_db[1], (n,), rng)
    return h, snr_db


def unpack(pred: dict, sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened channel and power budget: h [N, user, ant], p [N]."""
    return flat(sample["h"], 2), snr_to_power(flat(sample["snr_db"], 0))


def pred_sinr(pred: dict, sample: dict) -> torch.Tensor:
    """SINRs [N, user] of a prediction given either as ``W`` [.., ant, user] or as ``lam_p`` [.., user, 2]."""
    h, p = unpack(pred, sample)
    if "W" in pred:
        return precoding.sinr(h, flat(pred["W"], 2))
    return precoding.structure_sinr(precoding.gram(h), flat(pred["lam_p"], 2), p)


def classical(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Linear precoders MRT, ZF (water-filled), RZF on the samples: method -> {"W": [.., ant, user]}."""
    h, p = unpack({}, sample)
    lead = sample["snr_db"].shape
    out = {}
    for name, fn in (("mrt", precoding.mrt), ("zf", precoding.zf), ("rzf", precoding.rzf)):
        W = fn(h, p)
        out[name] = {"W": W.reshape(lead + tuple(W.shape[-2:]))}
    return out


def structure_of(h: torch.Tensor, W: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Normalised optimal-structure label lam_p [n, user, 2] float32 of precoders W."""
    return precoding.structure_params(h, W, p).float()


__all__ = ["X_KEYS", "draw", "unpack", "pred_sinr", "classical", "structure_of", "check_counts"]
