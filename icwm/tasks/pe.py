"""pe: path-loss estimation from the sub-6 GHz channel.

x: ``h_sub6 [sc6, ant6] complex64``; y: ``pathloss_db []`` (sub-6 path loss including shadow fading, dB).
Latent form (docs/contracts.md "Latent form"): each group (cell) draws a transmit-power offset Delta (dB) that scales
``h_sub6`` by ``10^(Delta / 20)``; the labels do not change, so the received level no longer says the path loss alone.
"""
from __future__ import annotations

import torch

from icwm.tasks import dual_common as dc
from icwm.tasks.common import LATENT_METHODS, flat, is_latent
from icwm.wireless import fingerprint
from icwm.wireless.sysconfig import SystemConfig

SPEC = dc.task_spec("pe", y={"pathloss_db": (0, "f")}, latent=("power_offset_db",), primary="nmse_mean_db",
                    direction=-1, trivial="nominal")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
SCALE_DB = 10.0   # loss scale: errors are measured in units of 10 dB


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_sub6 [group, sample, sc6, ant6]`` and ``pathloss_db [group, sample]``; in the latent form also the
    power offset fields and cell constants of ``dual_common.draw_power_offset``."""
    if cfg.form == "latent":
        d = dc.draw_power_offset(cfg, n_groups, n_per_group, rng)
        return {k: v for k, v in d.items() if k not in ("h_mmw", "distance_m")}
    d = dc.draw(cfg, n_groups, n_per_group, rng)
    return {"h_sub6": d["h_sub6"], "pathloss_db": d["pathloss_db"]}


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """Squared error in units of (10 dB)^2 [N]."""
    return ((flat(pred["pathloss_db"], 0) - flat(sample["pathloss_db"], 0)) / SCALE_DB).pow(2)


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``mae_db`` [N] and ``nmse`` [N] (squared error over the squared label, linear, LLM4WM's PE metric)."""
    p, t = flat(pred["pathloss_db"], 0), flat(sample["pathloss_db"], 0)
    return {"mae_db": (p - t).abs(), "nmse": (p - t).pow(2) / t.pow(2)}


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """From the other pairs of each episode (leave-one-out): k-NN fingerprinting, and ``rsrp_cal``, the received power
    (``-10 log10 mean |h|^2``, which is the path loss up to the transmit power and antenna gains) plus that offset
    averaged over the demos (a classical calibration of the cell from labelled UEs). On latent samples also
    ``oracle`` / ``blind`` / ``in_context`` (:func:`_latent_baselines`), and the two above only with demos."""
    raw = -fingerprint.rx_power_db(sample["h_sub6"])
    cal = raw + fingerprint.calibrated_offset(raw, sample["pathloss_db"].float())
    out = {"knn": {"pathloss_db": dc.knn_loo(sample, "pathloss_db")}, "rsrp_cal": {"pathloss_db": cal}}
    if not is_latent(sample):
        return out
    return {**_latent_baselines(sample), **(out if sample["pathloss_db"].shape[-1] >= 2 else {})}


def _latent_baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """``oracle`` / ``blind`` / ``in_context``: the received power corrected by the reference gain, the BS element
    gain towards the sub-6 angle and the cell power offset (true / prior / calibrated on the demos' path losses)."""
    base = dc.pathloss_estimate(sample, torch.zeros(()))                      # [..., pair] at Delta = 0
    fits = dc.power_offset_fits(sample, base, sample["pathloss_db"])
    return {m: {"pathloss_db": base + fits[m]} for m in LATENT_METHODS}
