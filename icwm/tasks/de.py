"""de: UE distance estimation from the sub-6 GHz channel.

x: ``h_sub6 [sc6, ant6] complex64`` (includes path loss, scaled by the fixed reference gain); y: ``distance_m []``.
A group is one drop (cell); demonstrations are other UEs of the same cell.
"""
from __future__ import annotations

import torch

from icwm.tasks import dual_common as dc
from icwm.tasks.common import flat
from icwm.wireless.sysconfig import SystemConfig

ID = "de"
X_KEYS = dc.X_KEYS
Y_KEYS = ("distance_m",)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_sub6 [group, sample, sc6, ant6]`` and ``distance_m [group, sample]`` (3D distance, m)."""
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
    """k-NN fingerprinting against the other pairs of each episode (leave-one-out; needs pairs as the last dim)."""
    return {"knn": {"distance_m": dc.knn_loo(sample, "distance_m")}}
