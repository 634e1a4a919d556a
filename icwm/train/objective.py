"""Training objective: the task's own loss on every pair of an episode (all k + 1 positions train)."""
from __future__ import annotations

import torch
from torch import nn

from icwm import tasks
from icwm.config import check
from icwm.model import LATENT_HAT, LATENT_SCALES
from icwm.tasks.common import LATENT_PREFIX


def flatten_pairs(d: dict, n_batch: int, n_pairs: int) -> dict:
    """Flatten the leading [B, k+1] dims of every tensor in ``d`` to [B*(k+1)]; other entries pass through.

    Args:
        d: dict of tensors [B, k+1, ...] (plus non-tensor entries such as ``task`` and ``k``).
    Returns:
        dict with tensors [B*(k+1), ...].
    """
    out = {}
    for key, v in d.items():
        if torch.is_tensor(v) and v.dim() >= 2 and tuple(v.shape[:2]) == (n_batch, n_pairs):
            out[key] = v.reshape((n_batch * n_pairs,) + tuple(v.shape[2:]))
        else:
            out[key] = v
    return out


def pair_losses(pred: dict, batch: dict) -> torch.Tensor:
    """Per-pair losses [B, k+1] of predictions ``pred`` (model output) against ``batch`` (labels + metadata)."""
    task, k = batch["task"], batch["k"]
    mod = tasks.get(task)
    lead = batch[mod.Y_KEYS[0]]
    check(lead.dim() >= 2 and lead.shape[1] == k + 1, f"batch[{mod.Y_KEYS[0]!r}]", f"shape [B, k+1={k + 1}, ...]",
          tuple(lead.shape))
    n_b, n_p = lead.shape[:2]
    loss = mod.loss(flatten_pairs(pred, n_b, n_p), flatten_pairs(batch, n_b, n_p))  # [B*(k+1)]
    return loss.reshape(n_b, n_p)


def target_key(batch: dict, name: str) -> str | None:
    """The batch field holding scalar latent ``name``'s truth: ``latent_<name>`` (latent form), else the input
    ``name`` (given form, e.g. the SNR), else None (an offset the given form does not apply: panel, power)."""
    return next((key for key in (LATENT_PREFIX + name, name) if key in batch), None)


def latent_target(batch: dict, name: str) -> torch.Tensor:
    """The true value of scalar latent ``name`` for every pair, [B, k+1]: the field ``target_key`` names, else 0."""
    key = target_key(batch, name)
    if key is not None:
        return batch[key].float()
    lead = batch[tasks.get(batch["task"]).Y_KEYS[0]]
    return torch.zeros(lead.shape[:2], device=lead.device)


def latent_losses(pred: dict, batch: dict, given: bool = True, unapplied: float = 1.0) -> torch.Tensor:
    """The latent probe's squared error, in ``LATENT_SCALES`` units, summed over the task's probed latents:
    [B, k+1] (zeros when the model has no probe for the task). ``given=False`` leaves out the latents the batch
    states as inputs (the given form's SNR: the head then reads the input, not the estimate); ``unapplied``
    multiplies the error on latents the batch neither hides nor states (an offset its form does not apply, target
    0)."""
    lead = batch[tasks.get(batch["task"]).Y_KEYS[0]]
    loss = torch.zeros(lead.shape[:2], device=lead.device)
    for key, hat in pred.items():
        if key.startswith(LATENT_HAT):
            name = key[len(LATENT_HAT):]
            if given or name not in batch:
                w = unapplied if target_key(batch, name) is None else 1.0
                loss = loss + w * ((hat - latent_target(batch, name)) / LATENT_SCALES[name]).pow(2)
    return loss


def task_losses(model: nn.Module, batch: dict, latent_weight: float = 0.0, latent_given: bool = True,
                latent_unapplied: float = 1.0) -> torch.Tensor:
    """Mean loss of one sampler batch over all its episodes and all k + 1 positions.

    Args:
        model: an ``ICWM`` (or a wrapper whose forward takes the batch dict).
        batch: ``task``, ``k`` and tensors [B, k+1, ...] for the task's X_KEYS, Y_KEYS and metadata.
        latent_weight: weight of the latent probe's loss (``latent_losses``) added to the task's.
        latent_given: whether that loss also covers latents the batch states as inputs (``latent_losses``' given).
        latent_unapplied: that loss's multiplier on offsets the batch's form does not apply (``latent_losses``).
    Returns:
        Scalar tensor (differentiable).
    """
    pred = model(batch)
    loss = pair_losses(pred, batch)
    if latent_weight > 0:
        loss = loss + latent_weight * latent_losses(pred, batch, latent_given, latent_unapplied)
    return loss.mean()


def nonfinite_episodes(batch: dict) -> dict[str, list[int]]:
    """Where a batch holds NaN / inf: field -> indices of the episodes (dim 0) concerned.

    Args:
        batch: a sampler batch, tensors [B, k+1, ...] (integer tensors are always finite and skipped).
    Returns:
        ``{key: [episode, ...]}`` for every floating or complex tensor with a non-finite entry (empty when clean).
    """
    out = {}
    for key, v in batch.items():
        if torch.is_tensor(v) and (v.is_floating_point() or v.is_complex()) and v.dim() >= 1:
            bad = ~torch.isfinite(v.detach()).reshape(v.shape[0], -1).all(dim=1)
            if bad.any():
                out[key] = bad.nonzero()[:, 0].tolist()
    return out
