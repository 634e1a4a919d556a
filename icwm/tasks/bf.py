"""bf: sub-6 GHz aided mmWave beam selection.

x: ``h_sub6 [sc6, ant6] complex64``; y: ``beam []`` int64, the best beam of the mmWave DFT codebook
(``cfg.dual_band.codebook_size`` beams, 256 by default) found by an exhaustive sweep on the same drop's mmWave channel.
Latent form (docs/contracts.md "Latent form"): each group (cell) draws a panel offset phi (degrees): the mmWave panel
is rotated by phi in azimuth against the sub-6 panel (``dualband`` "Panel offset"), so the same rays reach the mmWave
codebook at angles shifted by phi; the label is the sweep on that rotated channel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from icwm.tasks import dual_common as dc
from icwm.tasks.common import PRIOR_PREFIX, flat, is_latent, latent_fields
from icwm.wireless import beams, fingerprint, metrics
from icwm.wireless.sysconfig import SystemConfig

# eta is computed on the gain ratio (the beamforming gain of the chosen beam over the best beam's), not on top-1:
# top-1 among 256 beams from an 8-antenna sub-6 angle estimate is a few per cent even for the oracle, so on 64
# episodes per system its oracle - blind gap is within two standard errors; the gain ratio scores the same decision
# by the SNR it delivers and separates oracle from blind by about five (docs/results/latent_cpu).
SPEC = dc.task_spec("bf", y={"beam": (0, "i")}, latent=("panel_offset_deg",), primary="top1", direction=1,
                    trivial="chance", eta_metric="gain_ratio")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Returns ``h_sub6 [group, sample, sc6, ant6]``, ``beam [group, sample]``, ``beam_gain [group, sample, n_beams]``;
    in the latent form also ``latent_panel_offset_deg`` and ``prior_panel_offset_deg`` [group, sample]."""
    latent = cfg.form == "latent"
    d = dc.draw(cfg, n_groups, n_per_group, rng, panel_offset=latent)
    beam, gain = dc.best_beam(d["h_mmw"], cfg)
    out = {"h_sub6": d["h_sub6"], "beam": beam, "beam_gain": gain}
    if latent:
        out.update(latent_fields("panel_offset_deg", d["panel_offset_deg"], cfg.latent.panel_offset_deg))
    return out


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
    demo falls back to its angle-map beam). The query's label never enters it. Latent samples: see
    :func:`_latent_baselines`."""
    if is_latent(sample):
        return _latent_baselines(sample)
    beam = beams.sub6_angle_map(sample["h_sub6"], sample["beam_gain"].shape[-1])
    return {"angle_map": {"beam": beam}, **_knn(sample, beam)}


def _knn(sample: dict, fallback: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """``knn``: k = 1 leave-one-out fingerprinting, ``fallback`` [..., pair] where a pair has no neighbour; {} for
    one pair."""
    if fallback.shape[-1] < 2:
        return {}
    labels = {"h_sub6": sample["h_sub6"], "beam": sample["beam"].float()}
    nn_beam = dc.knn_loo(labels, "beam", k=1)                              # [..., pair] float, NaN without neighbours
    return {"knn": {"beam": torch.where(nn_beam.isnan(), fallback.float(), nn_beam).round().long()}}


def _latent_baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """The angle map for a rotated mmWave panel (``beams.rotated_angle_map``) at the true offset (``oracle``), the
    prior offset (``blind``), and the offset fitted to the demos' (h_sub6, beam) pairs (``in_context``:
    ``beams.fit_panel_offset``, leave-one-out for the demos, the prior where there is no demo); ``angle_map`` (panels
    assumed aligned) and ``knn`` as in the given form."""
    n_beams = sample["beam_gain"].shape[-1]
    az = beams.sub6_azimuth(sample["h_sub6"])                                   # [..., pair] rad
    prior = sample[PRIOR_PREFIX + "panel_offset_deg"]
    use = fingerprint.demo_mask(az.shape[-1], az.device).expand(*az.shape, az.shape[-1])   # [..., pair, pair]
    fit = beams.fit_panel_offset(az, sample["beam"], use, n_beams)
    offsets = {"oracle": sample["latent_panel_offset_deg"], "blind": prior,
               "in_context": torch.where(fit.isnan(), prior, fit), "angle_map": torch.zeros_like(prior)}
    out = {m: {"beam": beams.rotated_angle_map(az, n_beams, phi)} for m, phi in offsets.items()}
    return {**out, **_knn(sample, out["angle_map"]["beam"])}
