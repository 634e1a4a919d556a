"""det: uplink MIMO detection of 16-QAM symbols.

x: ``h [rx, user] complex64`` (known channel), ``y [slot, rx] complex64`` (L0 received slots), ``snr_db []``;
y: ``x [slot, user] complex64`` (transmitted unit-energy 16-QAM symbols). A group is one coherence block: all of its
samples share the channel and the SNR, only the symbols and the noise change.

Latent form (``cfg.form == "latent"``, docs/contracts.md "Latent form"): the same draws, but ``h`` and ``snr_db``
leave x for ``latent_h [group, sample, rx, user]``, ``latent_snr_db`` and ``prior_snr_db [group, sample]``; x is
``y`` alone and the demonstrations' (y, x) slots act as the coherence block's pilots.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import check_counts, crandn, flat, is_latent, latent_fields, replace, uniform
from icwm.tasks.taskspec import TaskSpec
from icwm.wireless import detection, metrics
from icwm.wireless.sysconfig import SystemConfig

SPEC = TaskSpec(id="det", x={"h": (2, "c"), "y": (2, "c"), "snr_db": (0, "f")}, y={"x": (2, "c")}, primary="ser",
                direction=-1, latent_x=("h", "snr_db"), latent=("h", "snr_db"),
                trivial="zero")
ID, X_KEYS, Y_KEYS, LATENT_X = SPEC.id, SPEC.x_keys, SPEC.y_keys, SPEC.latent_x
SLOTS = 8   # L0 received slots per sample (Zheng & Dai)
ORACLE_ML_MAX_USERS = 4   # latent form: exhaustive ML oracle up to 16**4 candidates (about 1 s per 64 queries, CPU)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw ``n_groups`` coherence blocks with ``n_per_group`` samples of ``SLOTS`` symbol vectors each.

    Returns:
        dict with ``h [group, sample, rx, user]``, ``y [group, sample, slot, rx]``, ``snr_db [group, sample]``,
        ``x [group, sample, slot, user]`` (complex64) and ``x_idx [group, sample, slot, user]`` int64; in the
        latent form ``h`` / ``snr_db`` are replaced by ``latent_h``, ``latent_snr_db`` and ``prior_snr_db``.
    """
    from icwm.wireless import channels   # the channel simulator (Sionna) loads on first use, not with the spec
    check_counts(n_groups, n_per_group)
    drops = channels.generate_drops(replace(cfg, num_subcarriers=1), n_groups, 1, rng)
    h = drops.h[:, :, 0, 0, :].transpose(-1, -2)  # [group, rx, user] (TDD reciprocity)
    n_rx, n_user = h.shape[-2:]
    snr_db = uniform(cfg.snr_db[0], cfg.snr_db[1], (n_groups,), rng)
    const = detection.qam16()
    x_idx = torch.randint(0, const.numel(), (n_groups, n_per_group, SLOTS, n_user), generator=rng)
    x = const[x_idx]
    noise_var = detection.noise_var_from_snr(snr_db, n_user)  # [group]
    noise = crandn((n_groups, n_per_group, SLOTS, n_rx), rng) * noise_var.sqrt()[:, None, None, None]
    y = torch.einsum("grk,gslk->gslr", h, x) + noise
    expand = lambda t: t[:, None].expand((n_groups, n_per_group) + tuple(t.shape[1:])).contiguous()  # noqa: E731
    out = {"h": expand(h), "y": y, "snr_db": expand(snr_db), "x": x, "x_idx": x_idx}
    return _to_latent(out, cfg) if cfg.form == "latent" else out


def _to_latent(out: dict[str, torch.Tensor], cfg: SystemConfig) -> dict[str, torch.Tensor]:
    """Latent form of generated samples: ``h`` and ``snr_db`` move to ``latent_*`` (and ``prior_snr_db``)."""
    h, snr_db = out.pop("h"), out.pop("snr_db")
    return {**out, **latent_fields("h", h), **latent_fields("snr_db", snr_db, cfg.snr_db)}


def loss(pred: dict, sample: dict) -> torch.Tensor:
    """Mean squared symbol error [N]."""
    return (flat(pred["x"], 2) - flat(sample["x"], 2)).abs().pow(2).mean((-2, -1))


def metric(pred: dict, sample: dict) -> dict[str, torch.Tensor]:
    """``nmse`` [N] (symbol NMSE, linear) and ``ser`` [N] (symbol error rate after hard decision)."""
    x_hat = flat(pred["x"], 2)
    idx_hat = detection.hard_decision(x_hat)
    return {"nmse": metrics.nmse(x_hat, flat(sample["x"], 2), dims=(-2, -1)),
            "ser": metrics.ser(idx_hat, flat(sample["x_idx"], 2))}


def baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """ZF, LMMSE, EP (10 iterations), K-best (K = 16) and ML detectors with the true channel.

    Latent samples: see :func:`latent_baselines`.

    Returns:
        method -> {"x": [.., slot, user]}.
    """
    if is_latent(sample):
        return latent_baselines(sample)
    h, y = flat(sample["h"], 2), flat(sample["y"], 2)
    noise_var = detection.noise_var_from_snr(flat(sample["snr_db"], 0), h.shape[-1])
    lead = sample["x"].shape[:-2]
    out = {}
    for name, fn in (("zf", detection.zf_detect), ("lmmse", detection.lmmse_detect), ("ep", detection.ep_detect),
                     ("kbest", lambda *a: detection.kbest_detect(*a, k=16)), ("ml", detection.ml_detect)):
        x_hat, _ = fn(h, y, noise_var)
        out[name] = {"x": x_hat.reshape(lead + tuple(x_hat.shape[-2:]))}
    return out


def latent_baselines(sample: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Detectors of the latent form's query from what each is allowed to know.

    ``oracle``: EP (10 iterations) with the true channel and noise variance (``latent_*``); ``oracle_ml``: ML with
    the true channel (up to ``ORACLE_ML_MAX_USERS`` users); ``blind``: x = 0 (nothing is known of the channel: chance,
    SER 15/16); ``in_context``: LS channel and noise variance from the demos' (y, x) pilot slots
    (:func:`icwm.wireless.detection.estimate_channel`), then EP with both estimates (adding the channel-error power
    ``noise_var tr((X^H X)^-1)`` to the noise made EP slightly worse at k = 1..4: not done); with no demos it is
    ``blind``. Only the query is detected.

    Args:
        sample: tensors ``[..., pair, ...]`` of one coherence block each, the query last.

    Returns:
        method -> {"x": [..., 1, slot, user]} (the query's prediction, the pair dim kept with size 1).
    """
    y = sample["y"][..., -1:, :, :]                                               # [..., 1, slot, rx]
    h = sample["latent_h"][..., -1:, :, :]                                        # [..., 1, rx, user]
    noise_var = detection.noise_var_from_snr(sample["latent_snr_db"][..., -1:], h.shape[-1])   # [..., 1]
    blind = torch.zeros(y.shape[:-1] + (h.shape[-1],), dtype=y.dtype)            # K: a system size, not theta
    out = {"oracle": {"x": detection.ep_detect(h, y, noise_var)[0]}, "blind": {"x": blind}}
    if h.shape[-1] <= ORACLE_ML_MAX_USERS:
        out["oracle_ml"] = {"x": detection.ml_detect(h, y)[0]}
    has_demos = sample["y"].shape[-3] > 1
    out["in_context"] = {"x": in_context_detect(sample["y"], sample["x"]) if has_demos else blind}
    return out


def in_context_detect(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """EP detection of the query with the channel and noise estimated from the demos' slots (pilots).

    Args:
        y: [..., pair, slot, rx] complex received slots, the query last; x: [..., pair, slot, user] symbols (the
            query's are never read). Needs ``(pair - 1) * slot > user``.

    Returns:
        x_hat [..., 1, slot, user] complex, the query's detection.
    """
    y_p = y[..., :-1, :, :].flatten(-3, -2)                                       # [..., demo * slot, rx]
    x_p = x[..., :-1, :, :].flatten(-3, -2)                                       # [..., demo * slot, user]
    h_hat, noise_var = detection.estimate_channel(y_p, x_p)                       # [..., rx, user], [...]
    return detection.ep_detect(h_hat[..., None, :, :], y[..., -1:, :, :], noise_var[..., None])[0]
