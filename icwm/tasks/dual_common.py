"""Shared pieces of the dual-band tasks (bf, de, pe): one group = one drop (cell) with many UEs."""
from __future__ import annotations

import torch

from icwm.tasks.common import PRIOR_PREFIX, check_counts, episode_scalar, flat, latent_fields, replace
from icwm.tasks.taskspec import Keys, TaskSpec
from icwm.wireless import beams, fingerprint
from icwm.wireless.sysconfig import SystemConfig


def task_spec(task_id: str, y: Keys, latent: tuple[str, ...], primary: str, direction: int, trivial: str,
              eta_metric: str = "") -> TaskSpec:
    """The spec of a dual-band task: x ``h_sub6 [sc6, ant6] c64``, which the latent form keeps (its theta acts on
    the channel itself); the classical baselines read the episode's demonstrations (k-NN fingerprinting);
    ``trivial``: the input-blind predictor of ``icwm.compare.converge`` (chance or nominal)."""
    return TaskSpec(id=task_id, x={"h_sub6": (2, "c")}, y=y, primary=primary, direction=direction, latent=latent,
                    eta_metric=eta_metric, context=True, trivial=trivial)


def draw(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator,
         panel_offset: bool = False) -> dict[str, torch.Tensor]:
    """Dual-band drops: ``n_groups`` drops with ``n_per_group`` UEs each.

    With ``panel_offset`` each drop's mmWave panel is rotated by an offset drawn in ``cfg.latent.panel_offset_deg``
    after the drop's own draws (``dualband.generate_dual_band``), returned as ``panel_offset_deg [group, sample]``.

    Returns:
        dict with ``h_sub6 [group, sample, sc6, ant6] c64``, ``h_mmw [group, sample, scm, antm] c64``,
        ``pathloss_db [group, sample]``, ``distance_m [group, sample]``.
    """
    from icwm.wireless import channels, dualband   # the channel simulator (Sionna) loads on first use
    check_counts(n_groups, n_per_group)
    sub = replace(cfg, num_users=n_per_group)
    if not panel_offset:
        dual = channels.generate_dual_band(sub, n_groups, rng)
    else:
        dual = dualband.generate_dual_band(sub, n_groups, rng, panel_offset_deg=cfg.latent.panel_offset_deg)
    out = {"h_sub6": dual.h_sub6, "h_mmw": dual.h_mmw, "pathloss_db": dual.pathloss_db.float(),
           "distance_m": dual.distance_m.float()}
    if panel_offset:
        out["panel_offset_deg"] = dual.panel_offset_deg[:, None].expand(n_groups, n_per_group).contiguous()
    return out


def draw_power_offset(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator
                      ) -> dict[str, torch.Tensor]:
    """de / pe latent form: the drops of :func:`draw`, then one cell transmit-power offset Delta per group (dB,
    uniform in ``cfg.latent.power_offset_db``, drawn after the drops) scaling ``h_sub6`` by ``10^(Delta / 20)``.

    Returns:
        :func:`draw`'s dict plus ``latent_power_offset_db``, ``prior_power_offset_db`` [group, sample] and the cell
        constants the classical estimators use: ``ref_gain_db`` [group, sample] (``dual_band.ref_gain_db``),
        ``pattern_38901`` [group, sample] bool (BS element pattern) and ``pl_law_db`` [group, sample, 2] (A, B of
        ``dualband.nominal_pathloss_law``).
    """
    from icwm.wireless import dualband
    d = draw(cfg, n_groups, n_per_group, rng)
    delta = episode_scalar(cfg.latent.power_offset_db, n_groups, n_per_group, rng)
    d["h_sub6"] = d["h_sub6"] * torch.pow(10.0, delta / 20.0)[..., None, None]
    shape = (n_groups, n_per_group)
    law = torch.tensor(dualband.nominal_pathloss_law(cfg), dtype=torch.float32)
    return {**d, **latent_fields("power_offset_db", delta, cfg.latent.power_offset_db),
            "ref_gain_db": torch.full(shape, cfg.dual_band.ref_gain_db),
            "pattern_38901": torch.full(shape, cfg.array.pattern == "38.901"),
            "pl_law_db": law.expand(*shape, 2).clone()}


def pathloss_estimate(sample: dict, offset_db: torch.Tensor) -> torch.Tensor:
    """Classical path loss [..., pair] of the latent-form pairs for an assumed cell power offset ``offset_db``
    [..., pair] (``fingerprint.pathloss_from_power`` towards the sub-6 dominant azimuth)."""
    az = beams.sub6_azimuth(sample["h_sub6"])
    return fingerprint.pathloss_from_power(sample["h_sub6"], sample["ref_gain_db"] + offset_db, az,
                                           sample["pattern_38901"])


def power_offset_fits(sample: dict, base_db: torch.Tensor, target_db: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three latent-form offsets [..., pair] added to the Delta = 0 estimate ``base_db`` [..., pair]: ``oracle``
    (the true Delta), ``blind`` (the prior) and ``in_context`` (leave-one-out demo mean of ``target - base``, the
    demos' labels mapped to dB by the caller; the prior where there is no demo). Only ``oracle`` reads ``latent_*``."""
    prior = sample[PRIOR_PREFIX + "power_offset_db"]
    cal = fingerprint.calibrated_offset(base_db, target_db.float())
    return {"oracle": sample["latent_power_offset_db"], "blind": prior,
            "in_context": torch.where(cal.isnan(), prior, cal)}


def best_beam(h_mmw: torch.Tensor, cfg: SystemConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Codebook sweep at mmWave: (beam [...] int64, beam_gain [..., n_beams] float32, normalised to max 1).

    The DFT codebook's gains through one FFT (``beams.dft_beam_gains``; the matrix product for an odd codebook)."""
    n_beams = cfg.dual_band.codebook_size
    gain = (beams.dft_beam_gains(h_mmw, n_beams) if n_beams % 2 == 0
            else beams.beam_gains(h_mmw, beams.dft_codebook(h_mmw.shape[-1], n_beams)))
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


__all__ = ["task_spec", "draw", "draw_power_offset", "pathloss_estimate", "power_offset_fits", "best_beam", "knn_loo",
           "flat"]
