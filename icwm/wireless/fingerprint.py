"""Fingerprinting baselines for distance / path-loss estimation: channel features and batched k-NN regression."""
from __future__ import annotations

import torch

from icwm.config import check


def features(h: torch.Tensor, n_delay: int = 8, power_weight: float = 1.0) -> torch.Tensor:
    """Real fingerprint of a sub-6 GHz channel: received power plus the normalised angle-delay profile.

    * ``power_weight * 10 log10(sum |h|^2 / (sc * ant)) / 10``: mean channel power in units of 10 dB (it carries
      the path loss, since the channels keep it);
    * ``sqrt`` of the angle-delay power profile ``|FFT_ant(IFFT_sc(h))|^2 / sum |h|^2`` for the first ``n_delay``
      delay taps and all angle bins (unit-norm vector, power-independent: the multipath geometry).

    Args:
        h: [..., sc, ant] complex; n_delay: delay taps kept (<= sc); power_weight: scale of the power feature.

    Returns:
        [..., 1 + n_delay * ant] float32.
    """
    check(h.dim() >= 2 and h.is_complex(), "h", "a complex tensor [..., sc, ant]", tuple(h.shape))
    check(1 <= n_delay <= h.shape[-2], "n_delay", f"1 <= n_delay <= sc={h.shape[-2]}", n_delay)
    power = h.abs().pow(2).sum((-2, -1))                                    # [...]
    adp = torch.fft.fft(torch.fft.ifft(h, dim=-2, norm="ortho"), dim=-1, norm="ortho")
    adp = adp[..., :n_delay, :].abs().pow(2) / power.clamp_min(1e-30)[..., None, None]
    return torch.cat([(power_weight * rx_power_db(h) / 10.0)[..., None], adp.sqrt().flatten(-2)], -1).float()


def rx_power_db(h: torch.Tensor) -> torch.Tensor:
    """Mean received power per resource element and antenna, ``10 log10(mean |h|^2)`` dB: h [..., sc, ant] -> [...]."""
    check(h.dim() >= 2 and h.is_complex(), "h", "a complex tensor [..., sc, ant]", tuple(h.shape))
    return 10.0 * torch.log10(h.abs().pow(2).mean((-2, -1)).clamp_min(1e-30))


def calibrated_offset(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Leave-one-out mean of ``y - x`` over the demos of each episode: x, y [..., pair] -> [..., pair].

    The last pair is the query: its label never enters. Pair i < last gets the mean over the other demos, the query
    the mean over all demos; NaN where there is none (a lone demo, or no demo).
    """
    check(x.shape == y.shape and x.dim() >= 1 and x.shape[-1] >= 1, "calibrated_offset(x, y)",
          "two tensors of one shape [..., pair] with pair >= 1", (tuple(x.shape), tuple(y.shape)))
    d = (y - x)[..., :-1]
    n = d.shape[-1]
    total = d.sum(-1, keepdim=True)
    loo = (total - d) / (n - 1) if n > 1 else torch.full_like(d, float("nan"))
    query = total / n if n > 0 else torch.full_like(total, float("nan"))
    return torch.cat((loo, query), -1)


def knn_regress(train_x: torch.Tensor, train_y: torch.Tensor, query_x: torch.Tensor, k: int = 3,
                weighted: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """k-nearest-neighbour regression (Euclidean), batched over leading dims.

    Prediction = mean of the ``k`` nearest training labels, or with ``weighted`` their inverse-distance
    weighted mean (a query on a training point returns that point's label). With ``k = 2`` and weighting, a
    1-D query between two neighbours is exactly the linear interpolation of their labels.

    Args:
        train_x: [..., n, f]; train_y: [..., n]; query_x: [..., q, f] (leading dims broadcast);
        k: 1 <= k <= n.

    Returns:
        [..., q] predictions (dtype of ``train_y``).
    """
    n = train_x.shape[-2]
    check(1 <= k <= n, "k", f"1 <= k <= n_train={n}", k)
    check(train_y.shape[-1] == n, "train_y", f"[..., n={n}]", tuple(train_y.shape))
    check(query_x.shape[-1] == train_x.shape[-1], "query_x", f"[..., q, f={train_x.shape[-1]}]",
          tuple(query_x.shape))
    diff = query_x[..., :, None, :] - train_x[..., None, :, :]                # [..., q, n, f]
    dist = diff.pow(2).sum(-1).sqrt()                                        # [..., q, n]
    d_k, idx = dist.topk(k, dim=-1, largest=False)                           # [..., q, k]
    y = train_y[..., None, :].expand(dist.shape).gather(-1, idx)            # [..., q, k]
    if not weighted:
        return y.mean(-1)
    exact = d_k <= eps
    w = torch.where(exact.any(-1, keepdim=True), exact.to(y.dtype), 1.0 / d_k.clamp_min(eps).to(y.dtype))
    return (w * y).sum(-1) / w.sum(-1)


def demo_mask(n_pairs: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Leave-one-out demo mask [pair, pair] bool: row i selects the demos (all pairs but the last, the query) other
    than pair i itself; the query's row selects every demo."""
    idx = torch.arange(n_pairs, device=device)
    return (idx[None, :] < n_pairs - 1) & (idx[None, :] != idx[:, None])


def element_gain_db(azimuth: torch.Tensor, pattern_38901: torch.Tensor) -> torch.Tensor:
    """BS element gain towards ``azimuth`` (rad) in the horizontal plane: TR 38.901 Table 7.3-1,
    ``8 - min(12 (phi / 65 deg)^2, 30)`` dBi, for the 38.901 element; 0 dB for the isotropic one. [...] -> [...]."""
    att = (12.0 * (torch.rad2deg(azimuth) / 65.0) ** 2).clamp_max(30.0)
    return torch.where(pattern_38901, 8.0 - att, torch.zeros_like(att))


def pathloss_from_power(h: torch.Tensor, budget_db: torch.Tensor, azimuth: torch.Tensor,
                        pattern_38901: torch.Tensor) -> torch.Tensor:
    """Classical path-loss estimate from the received power: ``budget + G_elem(azimuth) - rx_power_db(h)``.

    Args:
        h: [..., sc, ant] complex channel (transmit power and reference gain included);
        budget_db: [...] the transmit-side gain the BS assumes (reference gain + its power offset);
        azimuth: [...] rad, the dominant departure azimuth; pattern_38901: [...] bool (else isotropic elements).

    Returns:
        [...] float32 dB.
    """
    return (budget_db + element_gain_db(azimuth, pattern_38901) - rx_power_db(h)).float()
