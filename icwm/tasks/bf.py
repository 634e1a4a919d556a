"""bf: sub-6 GHz aided mmWave beam selection.

x: ``h_sub6 [sc6, ant6] complex64``; y: ``beam []`` int64, the best beam of the mmWave DFT codebook
(``cfg.dual_band.codebook_size`` beams, 256 by default) found by an exhaustive sweep on the same drop's mmWave channel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from icwm.tasks import dual_common as dc
from icwm.tasks.common import flat
from icwm.wireless import beams, metrics
from icwm.wireless.sysconfig import SystemConfig

ID = "bf"
X_KEYS = dc.X_KEYS
Y_KEYS = ("beam",)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_sub6 [group, sample, sc6, ant6]``, ``beam [group, sample]``, ``beam_gain [group, sample, n_beams]``."""
    d = dc.draw(cfg, n_groups, n_per_group, rng)
    beam, gain = dc.best_beam(d["h_mmw"], cfg)
    return {"h_sub6": d["h_sub6"], "beam": beam, "beam_gain": gain}


def _scores(pred: dict, n_beams: int) -> torch.Tensor:
    """[N, n_beams] scores: logits when given, else a one-hot of the predicted beam."""
    if "beam_logits" in pred:
        return flat(pred["beam_logits"], 1)
    return F.one_hot(flat(pred["beam"], 0), n_beams).float()


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """Cross-entropy of the beam logits [N]."""
    return F.cross_entropy(flat(pred["beam_logits"], 1), flat(sample["beam"], 0), reduction="none")


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``top1``, ``top5`` accuracy [N] and ``gain_ratio`` [N] (beamforming gain of the chosen beam / best beam's)."""
    gain = flat(sample["beam_gain"], 1)
    scores = _scores(pred, gain.shape[-1])
    label = flat(sample["beam"], 0)
    chosen = scores.argmax(-1)
    return {"top1": metrics.topk_accuracy(scores, label, 1), "top5": metrics.topk_accuracy(scores, label, 5),
            "gain_ratio": gain.gather(-1, chosen[:, None])[:, 0]}


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """``angle_map``: the sub-6 angle estimate mapped to the nearest mmWave beam (classical sub-6-aided selection).
    With demonstrations (``sample`` tensors [..., pair, ...], the query last, more than one pair) also ``knn``: the
    beam of the demo whose sub-6 fingerprint is nearest (``dual_common.knn_loo`` with k = 1; a position with no other
    demo falls back to its angle-map beam). The query's label never enters it."""
    n_beams = sample["beam_gain"].shape[-1]
    h6 = sample["h_sub6"]
    beam = beams.sub6_angle_map(h6, n_beams)
    out = {"angle_map": {"beam": beam}}
    if beam.shape[-1] >= 2:
        labels = {"h_sub6": h6, "beam": sample["beam"].float()}
        nn_beam = dc.knn_loo(labels, "beam", k=1)                      # [..., pair] float, NaN without neighbours
        out["knn"] = {"beam": torch.where(nn_beam.isnan(), beam.float(), nn_beam).round().long()}
    return out
