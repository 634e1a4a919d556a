"""det: uplink MIMO detection of 16-QAM symbols.

x: ``h [rx, user] complex64`` (known channel), ``y [slot, rx] complex64`` (L0 received slots), ``snr_db []``;
y: ``x [slot, user] complex64`` (transmitted unit-energy 16-QAM symbols). A group is one coherence block: all of its
samples share the channel and the SNR, only the symbols and the noise change.
"""
from __future__ import annotations

import torch

from icwm.tasks.common import check_counts, crandn, flat, group_split, replace, uniform
from icwm.wireless import channels, detection, metrics
from icwm.wireless.sysconfig import SystemConfig

ID = "det"
X_KEYS = ("h", "y", "snr_db")
Y_KEYS = ("x",)
SLOTS = 8   # L0 received slots per sample (Zheng & Dai)


def generate(cfg: SystemConfig, n_groups: int, n_per_group: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw ``n_groups`` coherence blocks with ``n_per_group`` samples of ``SLOTS`` symbol vectors each.

    Returns:
        dict with ``h [group, sample, rx, user]``, ``y [group, sample, slot, rx]``, ``snr_db [group, sample]``,
        ``x [group, sample, slot, user]`` (complex64) and ``x_idx [group, sample, slot, user]`` int64.
    """
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
    return {"h": expand(h), "y": y, "snr_db": expand(snr_db), "x": x, "x_idx": x_idx}


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

    Returns:
        method -> {"x": [.., slot, user]}.
    """
    h, y = flat(sample["h"], 2), flat(sample["y"], 2)
    noise_var = detection.noise_var_from_snr(flat(sample["snr_db"], 0), h.shape[-1])
    lead = sample["x"].shape[:-2]
    out = {}
    for name, fn in (("zf", detection.zf_detect), ("lmmse", detection.lmmse_detect), ("ep", detection.ep_detect),
                     ("kbest", lambda *a: detection.kbest_detect(*a, k=16)), ("ml", detection.ml_detect)):
        x_hat, _ = fn(h, y, noise_var)
        out[name] = {"x": x_hat.reshape(lead + tuple(x_hat.shape[-2:]))}
    return out
