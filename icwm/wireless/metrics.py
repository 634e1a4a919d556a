"""Shared per-sample metrics for the wireless tasks.

Every function returns a per-sample tensor over the leading (batch) dims ``[...]``; the dims it reduces are
stated in its docstring. Averages over a data set are left to the caller, with one rule: average linear
quantities first and convert to dB afterwards (:func:`mean_db`), never average dB values of NMSE.
"""
from __future__ import annotations

from typing import Sequence

import torch

from icwm.config import check

_TINY = 1e-30


def _dims(x: torch.Tensor, dims: Sequence[int] | int) -> tuple[int, ...]:
    """Normalise ``dims`` to a tuple of valid dims of ``x``."""
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    check(all(-x.dim() <= d < x.dim() for d in dims), "dims", f"dims of a {x.dim()}-d tensor", dims)
    return dims


def nmse(pred: torch.Tensor, target: torch.Tensor, dims: Sequence[int] | int) -> torch.Tensor:
    """Normalised mean squared error, linear, per sample.

    ``sum_dims |pred - target|^2 / sum_dims |target|^2`` (real or complex inputs).

    Args:
        pred: [..., *rest] estimate.
        target: [..., *rest] reference, same shape as ``pred``.
        dims: the non-batch dims reduced (e.g. ``(-3, -2, -1)`` for ``[..., time, sc, ant]``).

    Returns:
        [...] float (real dtype of the inputs).
    """
    check(pred.shape == target.shape, "pred", f"the shape of target {tuple(target.shape)}", tuple(pred.shape))
    d = _dims(target, dims)
    err = (pred - target).abs().pow(2).sum(d)
    return err / target.abs().pow(2).sum(d).clamp_min(_TINY)


def nmse_db(pred: torch.Tensor, target: torch.Tensor, dims: Sequence[int] | int) -> torch.Tensor:
    """:func:`nmse` in dB per sample: ``10 log10(nmse)`` (floored at -300 dB). Returns [...] float."""
    return 10.0 * torch.log10(nmse(pred, target, dims).clamp_min(1e-30))


def mean_db(x: torch.Tensor, dim: Sequence[int] | int | None = None) -> torch.Tensor:
    """dB of the mean of linear, non-negative values: ``10 log10(mean_dim x)``.

    Args:
        x: [...] linear quantity (e.g. per-sample NMSE).
        dim: dims averaged (``None``: all).

    Returns:
        The remaining dims (a scalar for ``dim=None``).
    """
    m = x.mean() if dim is None else x.mean(_dims(x, dim))
    return 10.0 * torch.log10(m.clamp_min(1e-30))


def ser(idx_hat: torch.Tensor, idx: torch.Tensor, dims: Sequence[int] | int = (-2, -1)) -> torch.Tensor:
    """Symbol error rate per sample: fraction of ``idx_hat != idx`` over ``dims``.

    Args:
        idx_hat: [..., slot, user] int64 detected constellation indices.
        idx: [..., slot, user] int64 transmitted indices.
        dims: reduced dims (default the last two, ``(slot, user)``).

    Returns:
        [...] float32.
    """
    check(idx_hat.shape == idx.shape, "idx_hat", f"the shape of idx {tuple(idx.shape)}", tuple(idx_hat.shape))
    return (idx_hat != idx).float().mean(_dims(idx, dims))


def topk_accuracy(scores: torch.Tensor, label: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 where ``label`` is among the ``k`` highest ``scores``, else 0.0.

    Ties are broken by ``torch.topk`` (lowest index first on CPU); with one-hot scores and ``k > 1`` the
    remaining slots go to arbitrary zero-score classes, which is the usual convention for hard predictions.

    Args:
        scores: [..., n_classes] float logits/scores.
        label: [...] int64 true class.
        k: 1 <= k <= n_classes.

    Returns:
        [...] float32.
    """
    check(1 <= k <= scores.shape[-1], "k", f"1 <= k <= n_classes={scores.shape[-1]}", k)
    check(label.shape == scores.shape[:-1], "label", f"shape {tuple(scores.shape[:-1])}", tuple(label.shape))
    top = scores.topk(k, dim=-1).indices                        # [..., k]
    return (top == label[..., None]).any(-1).float()


def mae(pred: torch.Tensor, target: torch.Tensor, dims: Sequence[int] | int = ()) -> torch.Tensor:
    """Mean absolute error ``mean_dims |pred - target|`` (``dims=()``: element-wise, e.g. distances [...]).

    Returns:
        [...] float.
    """
    check(pred.shape == target.shape, "pred", f"the shape of target {tuple(target.shape)}", tuple(pred.shape))
    err = (pred - target).abs()
    d = _dims(err, dims)
    return err.mean(d) if d else err


def spectral_efficiency(gain: torch.Tensor, snr: torch.Tensor | float) -> torch.Tensor:
    """Spectral efficiency ``log2(1 + snr * gain)`` in bit/s/Hz, element-wise.

    Args:
        gain: [...] non-negative effective channel gain (e.g. beamforming gain ``|h w|^2``, or an SINR with
            ``snr = 1``).
        snr: linear SNR (not dB), broadcast against ``gain``.

    Returns:
        [...] float.
    """
    return torch.log2(1.0 + torch.as_tensor(snr, dtype=gain.dtype, device=gain.device) * gain)
