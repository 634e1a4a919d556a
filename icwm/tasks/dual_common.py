"""Shared pieces of the dual-band tasks (bf, de, pe): one group = one drop (cell) with many UEs."""
from __future__ import annotations

import torch

from icwm.tasks.common import check_counts, flat, replace
from icwm.wireless import beams, channels, fingerprint
from icwm.wireless.sysconfig import SystemConfig

X_KEYS = ("h_sub6",)


def draw(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Dual-band drops: ``n_groups`` drops with ``n_per_group`` UEs each.

    Returns:
        dict with ``h_sub6 [group, sample, sc6, ant6] c64``, ``h_mmw [group, sample, scm, antm] c64``,
        ``pathloss_db [group, sample]``, ``distance_m [group, sample]``.
    """
    check_counts(n_groups, n_per_group)
    dual = channels.generate_dual_band(replace(cfg, num_users=n_per_group), n_groups, rng)
    return {"h_sub6": dual.h_sub6, "h_mmw": dual.h_mmw, "pathloss_db": dual.pathloss_db.float(),
            "distance_m": dual.distance_m.float()}


def best_beam(h_mmw: torch.Tensor, cfg: SystemConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook sweep at mmWave: (beam [...] int64, beam_gain [..., n_beams] float32, normalised to max 1)."""
    cb = beams.dft_codebook(h_mmw.shape[-1], cfg.dual_band.codebook_size)
    gain = beams.beam_gains(h_mmw, cb)
    return gain.argmax(-1), (gain / gain.amax(-1, keepdim=True)).float()


def knn_loo(sample: dict, key: str, k: int = 3) -> torch.Tensor:
    """Leave-one-out k-NN fingerprinting inside each episode: [..., pair] predictions of ``sample[key]``.

    Each pair is predicted from the OTHER pairs of its episode (its demos and, for demos, the other demos; the query's
    label is never used, as it is masked out of the database for every position).
    """
    feats = fingerprint.features(sample["h_sub6"])                  # [..., pair, f]
    y = sample[key]
    n = y.shape[-1]
    preds = []
    for i in range(n):
        keep = [j for j in range(n - 1) if j != i]                   # never the query (last pair) or itself
        if not keep:
            preds.append(torch.full_like(y[..., i], float("nan")))
            continue
        idx = torch.tensor(keep)
        preds.append(fingerprint.knn_regress(feats[..., idx, :], y[..., idx], feats[..., i:i + 1, :],
                                             k=min(k, len(keep)))[..., 0])
    return torch.stack(preds, -1)


__all__ = ["X_KEYS", "draw", "best_beam", "knn_loo", "flat"]
