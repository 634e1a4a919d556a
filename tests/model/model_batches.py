"""Random episode batches in the contract shapes (docs/contracts.md "Tasks" table), for model tests."""
from __future__ import annotations

import torch

from icwm import tasks
from icwm.tasks.common import LATENT_PREFIX, PRIOR_PREFIX


def _c(shape: tuple[int, ...], g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    z = torch.randn(shape + (2,), generator=g) * (scale * 0.5 ** 0.5)
    return torch.complex(z[..., 0], z[..., 1])


def random_batch(task: str, B: int = 2, k: int = 3, K: int = 3, N: int = 8, M: int = 12, S: int = 4, R: int = 6,
                 A: int = 8, S6: int = 16, seed: int = 0) -> dict:
    """One sampler-like batch: ``task``, ``k`` and tensors [B, k+1, ...] for X_KEYS and Y_KEYS."""
    g = torch.Generator().manual_seed(seed)
    P = k + 1
    snr = torch.rand(B, P, generator=g) * 20.0
    b: dict = {"task": task, "k": k}
    if task in ("pre_sr", "pre_mm"):
        b.update(h=_c((B, P, K, N), g), snr_db=snr, lam_p=torch.softmax(torch.randn(B, P, K, 2, generator=g), -2))
    elif task == "det":
        b.update(h=_c((B, P, R, K), g), y=_c((B, P, S, R), g), snr_db=snr, x=_c((B, P, S, K), g))
    elif task == "ce":
        b.update(h_ls=_c((B, P, 1, -(-M // 4), N), g), snr_db=snr, h=_c((B, P, 1, M, N), g))
    elif task == "cp":
        b.update(h_hist=_c((B, P, 16, M, N), g), snr_db=snr, h_fut=_c((B, P, 4, M, N), g))
    elif task == "pf":
        b.update(h_ul=_c((B, P, 1, M, N), g), snr_db=snr, h_dl=_c((B, P, 1, M, N), g))
    else:
        b.update(h_sub6=_c((B, P, S6, A), g, 1e-2), beam=torch.randint(0, 256, (B, P), generator=g),
                 distance_m=20.0 + 200.0 * torch.rand(B, P, generator=g),
                 pathloss_db=80.0 + 40.0 * torch.rand(B, P, generator=g))
    return b


KEYS = {  # task -> (X_KEYS, Y_KEYS), as in docs/contracts.md
    "pre_sr": (("h", "snr_db"), ("lam_p",)), "pre_mm": (("h", "snr_db"), ("lam_p",)),
    "det": (("h", "y", "snr_db"), ("x",)), "ce": (("h_ls", "snr_db"), ("h",)),
    "cp": (("h_hist", "snr_db"), ("h_fut",)), "pf": (("h_ul", "snr_db"), ("h_dl",)),
    "bf": (("h_sub6",), ("beam",)), "de": (("h_sub6",), ("distance_m",)), "pe": (("h_sub6",), ("pathloss_db",)),
}


def latent_batch(task: str, seed: int = 0, **sizes) -> dict:
    """``random_batch`` in the latent form: the inputs of ``SPEC.latent_x`` removed, and for every theta name of
    ``SPEC.latent`` a ``latent_<name>`` field (and for scalar ones a ``prior_<name>``) with arbitrary values shared by
    the pairs of an episode (the model must never read them)."""
    spec = tasks.spec(task)
    b = random_batch(task, seed=seed, **sizes)
    g = torch.Generator().manual_seed(seed + 1000)
    n_b, n_p = b[spec.y_keys[0]].shape[:2]
    for name in spec.latent:
        if name in b and b[name].is_complex():                      # a latent channel (det: h)
            shape = tuple(b[name].shape[2:])
            b[LATENT_PREFIX + name] = _c((n_b, 1) + shape, g).expand((n_b, n_p) + shape).clone()
            continue
        b[LATENT_PREFIX + name] = (5.0 * torch.randn(n_b, 1, generator=g)).expand(n_b, n_p).clone()
        b[PRIOR_PREFIX + name] = torch.full((n_b, n_p), 3.0)
    for key in spec.latent_x:
        del b[key]
    return b


def wake_bf_head(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give a fresh model's bf head the dependency on the trunk that training gives it: its confidence layer starts at
    zero (the untrained head is the sub-6 angle map at the probe's offset); tests of the trunk's wiring (masking,
    gradients) need it live. Returns ``model``."""
    if "bf" in model.heads:
        g = torch.Generator().manual_seed(seed)
        last = model.heads["bf"].out[-1]
        with torch.no_grad():
            last.weight.copy_(0.1 * torch.randn(last.weight.shape, generator=g))
    return model


def split_for_cache(batch: dict) -> tuple[dict, dict, dict]:
    """Episodes [B, k+1, ...] -> (episode 0's demonstrations [1, k, ...], the queries [B, 1, ...] with zero labels,
    the episodes [B, k+1, ...] of episode 0's demonstrations followed by each query): the inputs of the cached path
    (``icwm.model.cache``) and of the forward pass it must equal. Every field is kept but the truth (``latent_*``),
    which the model never reads, so stated nominals (``prior_*``) reach both paths."""
    task, k = batch["task"], batch["k"]
    keys = [key for key in batch if key not in ("task", "k") and not key.startswith(LATENT_PREFIX)]
    demos = {"task": task, "k": k, **{key: batch[key][:1, :k] for key in keys}}
    queries = {"task": task, "k": 0, **{key: batch[key][:, k:].clone() for key in keys}}
    for key in tasks.spec(task).y_keys:
        queries[key].zero_()
    n_b = batch[keys[0]].shape[0]
    full = {"task": task, "k": k, **{key: torch.cat((demos[key].expand((n_b,) + demos[key].shape[1:]), queries[key]), 1)
                                     for key in keys}}
    return demos, queries, full
