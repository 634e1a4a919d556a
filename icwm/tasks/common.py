"""Helpers shared by the task modules: random draws with explicit generators, shape flattening, noise."""
from __future__ import annotations

import dataclasses
import math
from types import ModuleType

import torch

from icwm.config import check
from icwm.wireless.sysconfig import SystemConfig


def uniform(lo: float, hi: float, shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
    """Uniform draws in [lo, hi]: [*shape] float32."""
    return lo + (hi - lo) * torch.rand(shape, generator=rng)


def crandn(shape: tuple[int, ...], rng: torch.Generator) -> torch.Tensor:
    """Circularly-symmetric CN(0, 1) draws: [*shape] complex64."""
    z = torch.randn(shape + (2,), generator=rng) * math.sqrt(0.5)
    return torch.complex(z[..., 0], z[..., 1])


def add_noise(h: torch.Tensor, snr_db: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """``h + n`` with ``n ~ CN(0, 10^(-snr_db/10))`` (unit-power channel convention).

    Args:
        h: [*lead, *rest] complex64.
        snr_db: [*lead] float32, broadcast over the trailing dims of ``h``.
    """
    sigma = torch.pow(10.0, -snr_db / 20.0).reshape(snr_db.shape + (1,) * (h.dim() - snr_db.dim()))
    return h + sigma * crandn(tuple(h.shape), rng)


def replace(cfg: SystemConfig, **changes) -> SystemConfig:
    """A copy of ``cfg`` with fields changed (validation runs again)."""
    return dataclasses.replace(cfg, **changes)


def flat(x: torch.Tensor, n_trailing: int) -> torch.Tensor:
    """Flatten all leading dims of ``x`` keeping its last ``n_trailing`` dims: [N, *trailing]."""
    trailing = x.shape[x.dim() - n_trailing:] if n_trailing else ()
    return x.reshape((-1,) + tuple(trailing))


def check_counts(n_groups: int, n_per_group: int) -> None:
    """Validate group counts for ``generate``."""
    check(n_groups >= 1, "n_groups", "an integer >= 1", n_groups)
    check(n_per_group >= 1, "n_per_group", "an integer >= 1", n_per_group)


def group_split(x: torch.Tensor, n_groups: int, n_per_group: int) -> torch.Tensor:
    """Reshape [n_groups * n_per_group, ...] -> [n_groups, n_per_group, ...]."""
    return x.reshape((n_groups, n_per_group) + tuple(x.shape[1:]))


def snr_to_power(snr_db: torch.Tensor) -> torch.Tensor:
    """Linear power budget p = 10^(snr_db / 10) (noise variance 1)."""
    return torch.pow(10.0, snr_db / 10.0)


def channel_nmse(pred: dict, sample: dict, key: str) -> torch.Tensor:
    """Per-sample NMSE (linear) [N] of a channel-valued label ``key`` shaped [..., time, sc, ant]."""
    from icwm.wireless import metrics
    return metrics.nmse(flat(pred[key], 3), flat(sample[key], 3), dims=(-3, -2, -1))


def nmse_report(e: torch.Tensor) -> dict[str, torch.Tensor]:
    """``nmse`` [N] (linear) and ``nmse_db`` [N] of per-sample NMSE values."""
    return {"nmse": e, "nmse_db": 10.0 * torch.log10(e.clamp_min(1e-12))}


# ---- latent form (docs/contracts.md "Latent form"; ../shared/ICL.md) --------------------------------------------
LATENT_PREFIX = "latent_"    # theta: read only by the oracle and by metrics (physics), never by other methods
PRIOR_PREFIX = "prior_"      # centre of a scalar latent's range: the value a blind method assumes
ORACLE_PREFIX = "oracle_"    # oracle prediction computed at generation from statistics too large to store
LATENT_METHODS = ("oracle", "blind", "in_context")   # the three baselines every task returns in the latent form


def nominal_keys(sample: dict) -> list[str]:
    """The ``prior_*`` fields of ``sample``: the system's stated nominal values, readable by every method."""
    return [key for key in sample if key.startswith(PRIOR_PREFIX)]


def is_latent(sample: dict) -> bool:
    """True for samples of the latent form (they carry ``latent_*`` fields)."""
    return any(key.startswith(LATENT_PREFIX) for key in sample)


def episode_scalar(rng_range: list[float], n_groups: int, n_per_group: int, rng: torch.Generator) -> torch.Tensor:
    """One uniform draw per group (episode) in ``rng_range``, shared by its samples: [group, sample] float32."""
    v = uniform(rng_range[0], rng_range[1], (n_groups,), rng)
    return v[:, None].expand(n_groups, n_per_group).contiguous()


def latent_fields(name: str, value: torch.Tensor, rng_range: list[float] | None = None) -> dict[str, torch.Tensor]:
    """``latent_<name>`` = ``value`` [group, sample, ...] and, for a scalar latent with a range,
    ``prior_<name>`` [group, sample] = the centre of the range."""
    out = {LATENT_PREFIX + name: value}
    if rng_range is not None:
        out[PRIOR_PREFIX + name] = torch.full(tuple(value.shape[:2]), 0.5 * (rng_range[0] + rng_range[1]))
    return out


def given_or_latent(sample: dict, name: str) -> torch.Tensor:
    """The true value of a parameter: the x field ``name`` (given form) or ``latent_<name>`` (latent form).

    For metrics (physics, e.g. the noise level an SINR is measured at) and oracles only.
    """
    return sample[name] if name in sample else sample[LATENT_PREFIX + name]


KIND_DTYPE = {"c": torch.complex64, "f": torch.float32, "i": torch.int64}   # TaskSpec kinds -> torch dtypes


@torch.no_grad()
def first_guess(task: ModuleType, x: dict[str, torch.Tensor], y_shapes: dict[str, tuple[int, ...]]
                ) -> dict[str, torch.Tensor]:
    """The task's first guess (``task.SPEC.first_guess``, a ``baselines()`` entry) for a batch of queries.

    Args:
        task: a task module whose spec names a first guess. x: its input tensors, each ``[batch, ...]`` (given or
            latent form).
        y_shapes: per-sample shape of each label key (labels enter as zeros: the first guess reads the inputs alone).

    Returns:
        Y_KEYS -> ``[batch, ...]``; each sample is scored as a one-pair episode.
    """
    check(bool(task.SPEC.first_guess), "task", "a task whose spec names a first guess", task.SPEC.id)
    ref = next(iter(x.values()))
    one = {k: x[k][:, None] for k in task.X_KEYS if k in x}     # a latent-form query lacks its LATENT_X
    one.update({k: torch.zeros((ref.shape[0], 1, *y_shapes[k]), dtype=KIND_DTYPE[kind], device=ref.device)
                for k, (_, kind) in task.SPEC.y.items()})
    return {k: v[:, 0] for k, v in task.baselines(one)[task.SPEC.first_guess].items()}
