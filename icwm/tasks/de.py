"""de: UE distance estimation from the sub-6 GHz channel.

x: ``h_sub6 [sc6, ant6] complex64`` (includes path loss, scaled by the fixed reference gain); y: ``distance_m []``.
A group is one drop (cell); demonstrations are other UEs of the same cell.
Latent form (docs/contracts.md "Latent form"): each cell draws a transmit-power offset Delta (dB) that scales
``h_sub6`` by ``10^(Delta / 20)``; the distances do not change.
"""
from __future__ import annotations

import torch

from icwm.tasks import dual_common as dc
from icwm.tasks.common import LATENT_METHODS, flat, is_latent
from icwm.wireless.sysconfig import SystemConfig

SPEC = dc.task_spec("de", y={"distance_m": (0, "f")}, latent=("power_offset_db",), primary="mae_m", direction=-1,
                    trivial="nominal")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_sub6 [group, sample, sc6, ant6]`` and ``distance_m [group, sample]`` (3D distance, m); in the
    latent form also the power offset fields and cell constants of ``dual_common.draw_power_offset``."""
    if cfg.form == "latent":
        d = dc.draw_power_offset(cfg, n_groups, n_per_group, rng)
        return {k: v for k, v in d.items() if k not in ("h_mmw", "pathloss_db")}
    d = dc.draw(cfg, n_groups, n_per_group, rng)
    return {"h_sub6": d["h_sub6"], "distance_m": d["distance_m"]}


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """L1 error in units of 100 m [N]."""
    return (flat(pred["distance_m"], 0) - flat(sample["distance_m"], 0)).abs() / 100.0


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``mae_m`` [N] absolute error in metres and ``rel_err`` [N] relative to the true distance."""
    err = (flat(pred["distance_m"], 0) - flat(sample["distance_m"], 0)).abs()
    return {"mae_m": err, "rel_err": err / flat(sample["distance_m"], 0)}


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """k-NN fingerprinting against the other pairs of each episode (leave-one-out; needs pairs as the last dim); on
    latent samples also ``oracle`` / ``blind`` / ``in_context`` (:func:`_latent_baselines`), and k-NN only with
    demos."""
    out = {"knn": {"distance_m": dc.knn_loo(sample, "distance_m")}}
    if not is_latent(sample):
        return out
    return {**_latent_baselines(sample), **(out if sample["distance_m"].shape[-1] >= 2 else {})}


def invert_law(pathloss_db: torch.Tensor, law: torch.Tensor, max_m: float = 1e5) -> torch.Tensor:
    """Distance (m) at which the cell's log-distance law ``A + B log10 d`` (``law [..., 2]``) gives ``pathloss_db``
    [...]; clamped to [1 m, ``max_m``]."""
    return torch.pow(10.0, (pathloss_db - law[..., 0]) / law[..., 1]).clamp(1.0, max_m)


def _latent_baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """The classical path loss (``dual_common.pathloss_estimate``) at the true / prior / demo-calibrated power offset
    (the demos' distances mapped to path loss by the law), then the cell's path-loss law inverted."""
    law = sample["pl_law_db"]
    base = dc.pathloss_estimate(sample, torch.zeros(()))                      # [..., pair] at Delta = 0
    target = law[..., 0] + law[..., 1] * torch.log10(sample["distance_m"].float())
    fits = dc.power_offset_fits(sample, base, target)
    return {m: {"distance_m": invert_law(base + fits[m], law)} for m in LATENT_METHODS}
