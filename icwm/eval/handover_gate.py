"""Calibrate the ce LMMSE handover gate ``g(j) = sigmoid(a + b log j)`` (``icwm.model.handover``) on one family.

One block-causal pass over ``pairs`` pairs gives, at every pair position j, the estimate from j earlier pairs; it
is run twice, with the gate forced to 0 (the head alone) and to 1 (LMMSE from the earlier pairs' covariance). The
blends ``(1 - g) head + g LMMSE`` on a grid of g are scored offline (NMSE, dB of the mean over all episodes of all
systems), and ``(a, b)`` is the grid point minimising the summed dB over j = 1 .. pairs - 1. Run it on the seen
family only: the unseen family is for evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from icwm import tasks as task_registry
from icwm.config import check
from icwm.eval.runner import episodes
from icwm.model.handover import LmmseHandover
from icwm.wireless.sysconfig import SystemConfig

BLENDS = tuple(i / 8 for i in range(9))          # g grid of the offline blends
A_GRID = tuple(x / 4 for x in range(-32, 5))     # a in [-8, 1]
B_GRID = tuple(x / 20 for x in range(0, 81))     # b in [0, 4]


@dataclass
class GateConfig:
    """``launch/calibrate_handover.py``: model, family, sample sizes, output."""

    model: str = "shipped"                          # "shipped" or a save_pretrained directory
    family: str = "configs/systems/link_seen.yaml"  # systems to calibrate on (the seen link family)
    episodes: int = 96                              # per system
    pairs: int = 17                                 # pair positions per episode: j = 0 .. pairs - 1
    chunk: int = 16                                 # episodes per forward pass
    seed: str = "gate-seen"                         # seed prefix (distinct from the evaluation's)
    out: str = "outputs/handover/gate.json"
    apply_to: str = ""                              # when set: save the model with the fitted gate there

    def __post_init__(self) -> None:
        for name in ("episodes", "chunk"):
            check(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))
        check(self.pairs >= 2, "pairs", "an integer >= 2 (one demo and a query)", self.pairs)


def handover_of(model: torch.nn.Module) -> LmmseHandover:
    """The model's ce handover module (ValueError when it has none)."""
    mods = [m for m in model.modules() if isinstance(m, LmmseHandover)]
    check(len(mods) == 1, "model", "a model with the ce LMMSE handover (model.ce_handover: true)", len(mods))
    return mods[0]


@torch.no_grad()
def blend_errors(model: torch.nn.Module, systems: Iterable[SystemConfig], cfg: GateConfig) -> dict:
    """Per-episode NMSE (linear) of each blend at each pair position.

    Args:
        model: an ``ICWM`` with the ce handover (its gate is restored on return).
        systems: link systems to draw ce episodes from.  cfg: sample sizes and seed prefix.
    Returns:
        ``{(j, g): tensor [N]}``, N = systems x episodes (all systems' episodes in order), for j = 1 .. pairs - 1
        and g in ``BLENDS``.
    """
    ce, ho = task_registry.get("ce"), handover_of(model)
    saved = (ho.gate_a.detach().clone(), ho.gate_b.detach().clone())
    errs: dict[tuple[int, float], list[torch.Tensor]] = {}
    try:
        for system in systems:
            for smp in episodes(ce, system, cfg.episodes, cfg.pairs, cfg.chunk, (cfg.seed, system.name)):
                batch = {"task": "ce", "k": cfg.pairs - 1, **{k: smp[k] for k in (*ce.X_KEYS, *ce.Y_KEYS)}}
                ests = []
                for a in (-60.0, 60.0):                 # gate 0 (head) and gate 1 (LMMSE) at every j >= 1
                    ho.gate_a.fill_(a)
                    ho.gate_b.fill_(0.0)
                    ests.append(model(batch)["h"])
                for j in range(1, cfg.pairs):
                    label = {"h": smp["h"][:, j]}
                    for g in BLENDS:
                        est = {"h": (1 - g) * ests[0][:, j] + g * ests[1][:, j]}
                        errs.setdefault((j, g), []).append(ce.loss(est, label))
    finally:
        ho.gate_a.copy_(saved[0])
        ho.gate_b.copy_(saved[1])
    return {key: torch.cat(v) for key, v in errs.items()}


def pooled_db(errs: dict) -> dict:
    """``{(j, g): NMSE dB of the mean}`` (j: earlier pairs, g: LMMSE weight) of ``blend_errors``' output."""
    return {key: 10.0 * math.log10(float(v.mean())) for key, v in errs.items()}


def gate_value(a: float, b: float, j: int) -> float:
    """sigmoid(a + b log j)."""
    return 1.0 / (1.0 + math.exp(-(a + b * math.log(j))))


def gate_cost(db: dict, a: float, b: float) -> float:
    """Summed dB over j of the blend at g(j), linear in g between the grid's points (held at the end points outside).

    Args:
        db: ``{(j, g): dB}`` as from ``pooled_db``: every j with the same g grid.  a, b: the gate's constants.
    """
    gs = sorted({g for _, g in db})
    js = sorted({j for j, _ in db})
    total = 0.0
    for j in js:
        g = min(max(gate_value(a, b, j), gs[0]), gs[-1])
        hi = next(i for i, x in enumerate(gs) if x >= g)
        lo = max(hi - 1, 0)
        w = 0.0 if hi == lo else (g - gs[lo]) / (gs[hi] - gs[lo])
        total += (1 - w) * db[(j, gs[lo])] + w * db[(j, gs[hi])]
    return total


def fit_gate(db: dict) -> tuple[float, float]:
    """The ``(a, b)`` of ``A_GRID x B_GRID`` with the lowest ``gate_cost``."""
    return min(((a, b) for a in A_GRID for b in B_GRID), key=lambda ab: gate_cost(db, *ab))


__all__ = ["BLENDS", "GateConfig", "blend_errors", "fit_gate", "gate_cost", "gate_value", "handover_of", "pooled_db"]
