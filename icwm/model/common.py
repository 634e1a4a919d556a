"""Small pieces every task family's embedder uses: complex -> real, padding, MLPs, codes, missing inputs, nominal
values of hidden latents."""
from __future__ import annotations

import torch
from torch import nn

from icwm import tasks
from icwm.tasks.common import PRIOR_PREFIX

# Scalar latents the probe reads out, with the scale (natural units per output unit) of its read-out and loss.
LATENT_SCALES = {"snr_db": 20.0, "panel_offset_deg": 20.0, "power_offset_db": 10.0}


def scalar_latents(task: str) -> tuple[str, ...]:
    """The scalar latents of ``task`` (its ``TaskSpec.latent`` names that have a scale in ``LATENT_SCALES``)."""
    return tuple(n for n in tasks.spec(task).latent if n in LATENT_SCALES)


def nominal_values(batch: dict, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The stated nominal value of each hidden latent in ``names`` that the batch carries: ``prior_<name>`` [B, P]
    (the centre of the system's range, what the blind baseline designs at), as {name: float32 tensor}."""
    return {n: batch[PRIOR_PREFIX + n].float() for n in names if PRIOR_PREFIX + n in batch}


class NominalEmbed(nn.Module):
    """The nominal values of a task's hidden scalar latents as one embedding added to every x-token of a pair.

    Features per latent: ``(nominal / LATENT_SCALES[name], 1)`` when the batch states it (``prior_<name>``), else
    ``(0, 0)`` (the given form, or a latent-form episode without a stated nominal); ``values=False`` (inputs already
    in the nominal's frame) keeps only the flag: ``(0, 1)``. Zero-initialised: the untrained embedding leaves the
    tokens as they are.
    """

    def __init__(self, names: tuple[str, ...], d: int, values: bool = True) -> None:
        super().__init__()
        self.names, self.values = tuple(names), values
        self.lin = nn.Linear(2 * len(self.names), d)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, batch: dict, like: torch.Tensor) -> torch.Tensor:
        """batch (optionally ``prior_<name>`` [B, P]); like: any [B, P, ...] tensor -> [B, P, 1, d]."""
        w = self.lin.weight
        return self.lin(nominal_features(batch, self.names, like, self.values).to(w.dtype))[:, :, None]


def nominal_features(batch: dict, names: tuple[str, ...], like: torch.Tensor, values: bool = True) -> torch.Tensor:
    """``NominalEmbed``'s features: per latent in ``names``, ``(nominal / LATENT_SCALES[name], 1)`` where the batch
    states it (``prior_<name>`` [B, P] or [B, 1]), else ``(0, 0)``; ``values=False`` keeps only the flag. like: any
    [B, P, ...] tensor -> [B, P, 2 len(names)] float32."""
    nominal = nominal_values(batch, names)
    zero = torch.zeros(like.shape[:2], device=like.device)
    cols = []
    for n in names:
        v = nominal.get(n)
        if v is None:
            cols += [zero, zero]
        else:
            cols += [v.to(zero.device).expand_as(zero) / LATENT_SCALES[n] if values else zero, torch.ones_like(zero)]
    return torch.stack(cols, -1) if cols else zero[..., None][..., :0]


def c2r(z: torch.Tensor) -> torch.Tensor:
    """The one complex -> real conversion: z [...] complex -> [..., 2] float (real, imag)."""
    return torch.view_as_real(z.resolve_conj()) if z.is_complex() else torch.stack((z, torch.zeros_like(z)), -1)


def sinusoid(n: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sinusoidal codes of the indices 0..n-1: [n, dim] float32 (defined for any n)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    inv = 10000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    out = torch.zeros(n, dim, device=device)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)[:, : dim // 2]
    return out


def pad_dim(x: torch.Tensor, dim: int, size: int, front: bool = False) -> torch.Tensor:
    """Zero-pad ``x`` along ``dim`` up to ``size`` (at the front or the back)."""
    extra = size - x.shape[dim]
    if extra <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    z = x.new_zeros(shape)
    return torch.cat((z, x) if front else (x, z), dim=dim)


def mlp(d_in: int, d: int) -> nn.Sequential:
    """Two-layer SiLU MLP d_in -> d -> d."""
    return nn.Sequential(nn.Linear(d_in, d), nn.SiLU(), nn.Linear(d, d))


def scalar_feature(batch: dict, key: str, scale: float, like: torch.Tensor) -> torch.Tensor:
    """An optional scalar input as two features ``(value / scale, missing)``: [B, P] -> [B, P, 2] float32.

    A latent-form episode omits the input (``key`` absent): the features are ``(0, 1)``, so the weight a linear
    layer puts on the flag is that input's learned missing-feature embedding. ``like``: any [B, P, ...] tensor of the
    batch (shape and device).
    """
    if key in batch:
        v = batch[key].float() / scale
        return torch.stack((v, torch.zeros_like(v)), -1)
    zero = torch.zeros(like.shape[:2], device=like.device)
    return torch.stack((zero, torch.ones_like(zero)), -1)


def gram_stats(G: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample normalised Gram features (independent of the batch).

    Args:
        G: [..., user, user] complex Gram matrix; scale: [...] factor multiplying the diagonal (an SNR).
    Returns:
        la: [..., user] log10(1 + scale * G_kk); rho: [..., user, user] |G_kj| / sqrt(G_kk G_jj).
    """
    dg = G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)
    la = torch.log10(1.0 + scale[..., None] * dg)
    rho = G.abs() / (dg[..., :, None] * dg[..., None, :]).sqrt()
    return la, rho


class GramSet(nn.Module):
    """Permutation-equivariant user-set embedding: token_k = mean_j phi(f_k, f_j, rho_kj, rho_kj^2, [k == j]).

    ``f`` [..., user, n_own] are per-user features, ``rho`` the normalised Gram magnitudes.
    """

    def __init__(self, n_own: int, d: int) -> None:
        super().__init__()
        self.phi = mlp(2 * n_own + 3, d)

    def forward(self, f: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        """f: [..., user, n_own], rho: [..., user, user] -> [..., user, d]."""
        n = f.shape[-2]
        eye = torch.eye(n, device=f.device, dtype=rho.dtype).expand(rho.shape)
        pair = torch.cat((f[..., :, None, :].expand(rho.shape + f.shape[-1:]),
                          f[..., None, :, :].expand(rho.shape + f.shape[-1:]),
                          torch.stack((rho, rho * rho, eye), -1)), -1)
        w = self.phi[0].weight
        return self.phi(pair.to(w.dtype)).mean(-2)
