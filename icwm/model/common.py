"""Small pieces every task family's embedder uses: complex -> real, padding, MLPs, codes, missing inputs."""
from __future__ import annotations

import torch
from torch import nn


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
