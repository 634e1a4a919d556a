"""Multi-user MISO downlink precoding: MRT, ZF, RZF, WMMSE and the optimal beamforming structure.

Conventions (docs/contracts.md): ``h: [..., user, ant]`` complex, ``W: [..., ant, user]``, received signal
``r = h @ W @ s + n`` with noise variance 1, power ``||W||_F^2 = p`` (``p`` a float or a tensor ``[...]``),
``SINR_k = |h_k w_k|^2 / (sum_{j != k} |h_k w_j|^2 + 1)``, Gram matrix ``G = h h^H: [..., user, user]``.

Every precoder here lives in the K-dimensional row space of ``h``: ``W = h^H B`` with ``B: [..., user, user]``
(push-through identity ``(I + h^H A h)^{-1} h^H = h^H (I + A G)^{-1}``), so the solvers work on ``G`` only and
their cost does not grow with the antenna count beyond forming ``G``.

Optimal structure (Bjornson, Bengtsson, Ottersten 2014): ``w_k = sqrt(p_k) v_k / ||v_k||`` with
``v_k = (I + sum_j lam_j h_j^H h_j)^{-1} h_k^H``, ``lam_j >= 0``, ``sum_j lam_j = p``, ``sum_k p_k = p``.
Label format ``lam_p: [..., user, 2]`` real: column 0 is ``lam_k / p``, column 1 is ``p_k / p``; both columns sum to
1 over users. ``precoder_from_structure`` and ``structure_sinr`` take this normalised form and the budget ``p``.
"""
from __future__ import annotations

import torch

from icwm.config import check
from icwm.wireless.linalg import eigh

__all__ = ["gram", "sinr", "sinr_gram", "sum_rate", "min_sinr_db", "power_of", "mrt", "zf", "zf_balanced", "rzf",
           "wmmse", "wmmse_gram", "wmmse_antenna", "wmmse_from_structure", "precoder_from_structure", "structure_sinr",
           "structure_params",
           "maxmin_sinr", "check_channel", "as_power", "scale_to_power", "structure_sinr_at", "structure_residual",
           "fit_power_db", "fit_demos_db", "fit_snr_db"]


# ----------------------------------------------------------------------------------------------- validation
def check_channel(h: torch.Tensor, name: str = "h") -> None:
    """Raise ``ValueError`` unless ``h`` is a complex tensor ``[..., user, ant]``."""
    check(isinstance(h, torch.Tensor), name, "a torch.Tensor [..., user, ant]", type(h).__name__)
    check(h.is_complex(), name, "a complex tensor (complex64 or complex128) [..., user, ant]", h.dtype)
    check(h.dim() >= 2 and h.shape[-1] >= 1 and h.shape[-2] >= 1, name, "shape [..., user, ant]", tuple(h.shape))


def as_power(p: float | torch.Tensor, lead: torch.Size, ref: torch.Tensor) -> torch.Tensor:
    """Power budget as a real tensor ``[...]`` (= ``lead``) on ``ref``'s device, real dtype of ``ref``.

    Raises:
        ValueError: ``p`` not positive and finite, or not broadcastable to the batch shape ``lead``.
    """
    real = ref.real.dtype if ref.is_complex() else ref.dtype
    pt = torch.as_tensor(p, dtype=real, device=ref.device)
    check(bool(torch.isfinite(pt).all()) and bool((pt > 0).all()), "p", "a positive finite power budget", p)
    try:
        return torch.broadcast_to(pt, lead).clone()
    except RuntimeError:
        raise ValueError(f"p: expected a float or a tensor broadcastable to the batch shape {tuple(lead)}, "
                         f"got shape {tuple(pt.shape)}") from None


def _check_w(h: torch.Tensor, W: torch.Tensor) -> None:
    check_channel(h)
    check(isinstance(W, torch.Tensor) and W.is_complex(), "W", "a complex tensor [..., ant, user]",
          getattr(W, "dtype", type(W).__name__))
    want = tuple(h.shape[:-2]) + (h.shape[-1], h.shape[-2])
    check(tuple(W.shape) == want, "W", f"shape [..., ant, user] = {want} matching h", tuple(W.shape))


# ----------------------------------------------------------------------------------------------- metrics
def gram(h: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``G = h h^H``.

    Args:
        h: [..., user, ant] complex.
    Returns:
        G: [..., user, user] complex, Hermitian positive semi-definite.
    """
    check_channel(h)
    return h @ h.mH


def _sig_interf(E: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal ``|E_kk|^2`` and interference ``sum_{j != k} |E_kj|^2`` (no cancellation): [..., user] each."""
    pw = E.real.square() + E.imag.square()
    sig = torch.diagonal(pw, dim1=-2, dim2=-1)
    off = 1.0 - torch.eye(E.shape[-1], dtype=pw.dtype, device=pw.device)
    return sig, (pw * off).sum(-1)


def _sinr_from_effective(E: torch.Tensor) -> torch.Tensor:
    """SINRs from the effective channel ``E = h W: [..., user, user]`` -> [..., user] real."""
    sig, interf = _sig_interf(E)
    return sig / (interf + 1.0)


def sinr(h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Per-user SINR (noise variance 1).

    Args:
        h: [..., user, ant] complex.  W: [..., ant, user] complex.
    Returns:
        sinr: [..., user] real (linear).
    """
    _check_w(h, W)
    return _sinr_from_effective(h @ W)


def sinr_gram(G: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Per-user SINR of ``W = h^H B`` from the Gram matrix alone: ``h W = G B``.

    Args:
        G: [..., user, user] complex.  B: [..., user, user] complex.
    Returns:
        sinr: [..., user] real.
    """
    return _sinr_from_effective(G @ B)


def sum_rate(h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Sum rate ``sum_k log2(1 + SINR_k)`` in bit/s/Hz: [...] real."""
    return torch.log2(1.0 + sinr(h, W)).sum(-1)


def min_sinr_db(h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Minimum SINR over users in dB: [...] real."""
    return 10.0 * torch.log10(sinr(h, W).amin(-1))


def power_of(W: torch.Tensor) -> torch.Tensor:
    """Total transmit power ``||W||_F^2``: [...] real."""
    return (W.real.square() + W.imag.square()).sum((-2, -1))


def _gram_power(G: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``||h^H B||_F^2 = tr(B^H G B)``: [...] real."""
    return torch.diagonal(B.mH @ G @ B, dim1=-2, dim2=-1).real.sum(-1)


def _scale_to(G: torch.Tensor, B: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Scale ``B`` so that ``tr(B^H G B) = p``."""
    c = torch.sqrt(p / _gram_power(G, B).clamp_min(torch.finfo(p.dtype).tiny))
    return B * c[..., None, None].to(B.dtype)


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device)


# ----------------------------------------------------------------------------------------------- linear
def mrt(h: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """Maximum-ratio transmission ``W = c h^H`` (equal column scaling, total power ``p``).

    Args:
        h: [..., user, ant] complex.  p: float or [...] power budget (noise variance 1).
    Returns:
        W: [..., ant, user] complex.
    """
    check_channel(h)
    pt = as_power(p, h.shape[:-2], h)
    c = torch.sqrt(pt / (h.real.square() + h.imag.square()).sum((-2, -1)))
    return h.mH * c[..., None, None].to(h.dtype)


def _waterfill(noise: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Water-filling ``p_k = max(mu - noise_k, 0)``, ``sum p_k = p``.

    Args:
        noise: [..., user] positive (inverse stream gains).  p: [...].
    Returns:
        powers: [..., user].
    """
    srt, _ = torch.sort(noise, dim=-1)
    m = torch.arange(1, noise.shape[-1] + 1, dtype=noise.dtype, device=noise.device)
    mus = (p[..., None] + torch.cumsum(srt, -1)) / m  # water level if the m best streams are active
    n_active = (mus > srt).sum(-1, keepdim=True).clamp_min(1)  # valid m form a prefix
    mu = torch.gather(mus, -1, n_active - 1)
    return (mu - noise).clamp_min(0.0)


def zf(h: torch.Tensor, p: float | torch.Tensor, waterfill: bool = True) -> torch.Tensor:
    """Zero-forcing ``W = h^H G^{-1} diag(sqrt(p_k / [G^{-1}]_kk))``, water-filled or equal stream powers.

    Args:
        h: [..., user, ant] complex with user <= ant.  p: float or [...].
        waterfill: water-filling over the ZF streams (gains ``1/[G^{-1}]_kk``) if True, else ``p_k = p/K``.
    Returns:
        W: [..., ant, user] complex; ``h W`` is diagonal.
    Raises:
        ValueError: more users than antennas (num_users > ant).
    """
    check_channel(h)
    K, nt = h.shape[-2], h.shape[-1]
    check(K <= nt, "h (num_users/ant)", f"num_users <= ant for zero-forcing, got num_users={K} > ant={nt}", K)
    pt = as_power(p, h.shape[:-2], h)
    Ginv = torch.linalg.inv(gram(h))
    noise = torch.diagonal(Ginv, dim1=-2, dim2=-1).real.clamp_min(torch.finfo(pt.dtype).tiny)
    pk = _waterfill(noise, pt) if waterfill else (pt[..., None] / K).expand_as(noise)
    return h.mH @ (Ginv * torch.sqrt(pk / noise)[..., None, :].to(h.dtype))


def zf_balanced(h: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """Max-min fair zero-forcing: ZF directions with powers ``p_k ∝ [G^{-1}]_kk`` so that every user gets the SINR
    ``p / tr(G^{-1})`` (the best minimum SINR among ZF precoders).

    Args:
        h: [..., user, ant] complex with user <= ant.  p: float or [...].
    Returns:
        W: [..., ant, user] complex.
    """
    check_channel(h)
    K, nt = h.shape[-2], h.shape[-1]
    check(K <= nt, "h (num_users/ant)", f"num_users <= ant for zero-forcing, got num_users={K} > ant={nt}", K)
    pt = as_power(p, h.shape[:-2], h)
    Ginv = torch.linalg.inv(gram(h))
    noise = torch.diagonal(Ginv, dim1=-2, dim2=-1).real
    c = torch.sqrt(pt / noise.sum(-1))  # column k of G^{-1} has norm^2 [G^{-1}]_kk: scale all by c
    return h.mH @ (Ginv * c[..., None, None].to(h.dtype))


def _rzf_gram(G: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    K = G.shape[-1]
    reg = (K / p)[..., None, None].to(G.dtype)
    return _scale_to(G, torch.linalg.inv(G + reg * _eye(K, G)), p)


def rzf(h: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """Regularised ZF ``W = c h^H (G + (K/p) I)^{-1}``, scaled to total power ``p``.

    Args:
        h: [..., user, ant] complex.  p: float or [...].
    Returns:
        W: [..., ant, user] complex.
    """
    check_channel(h)
    pt = as_power(p, h.shape[:-2], h)
    return h.mH @ _rzf_gram(gram(h), pt)


# ----------------------------------------------------------------------------------------------- WMMSE
def _init_gram(G: torch.Tensor, p: torch.Tensor, init: str, rng: torch.Generator | None) -> torch.Tensor:
    K = G.shape[-1]
    if init == "rzf":
        return _rzf_gram(G, p)
    if init == "mrt":
        return _scale_to(G, _eye(K, G).expand(G.shape).clone(), p)
    shape = tuple(G.shape)
    re = torch.randn(shape, generator=rng, dtype=p.dtype, device="cpu" if rng is None else rng.device)
    im = torch.randn(shape, generator=rng, dtype=p.dtype, device=re.device)
    return _scale_to(G, torch.complex(re, im).to(G.device, G.dtype), p)


def _bisect_mu(lam: torch.Tensor, num: torch.Tensor, p: torch.Tensor, steps: int = 48) -> torch.Tensor:
    """Multiplier ``mu >= 0`` with ``sum_i num_i / (mu + lam_i)^2 = p`` by batched bisection.

    Args:
        lam: [..., n] eigenvalues (>= 0).  num: [..., n] non-negative numerators.  p: [...].
    Returns:
        mu: [...], on the feasible side (power <= p).
    """
    lam = lam.clamp_min(0.0)
    hi = torch.sqrt(num.sum(-1) / p).clamp_min(torch.finfo(p.dtype).tiny)  # power(hi) <= p
    lo = torch.zeros_like(hi)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        over = (num / (mid[..., None] + lam).square()).sum(-1) > p
        lo = torch.where(over, mid, lo)
        hi = torch.where(over, hi, mid)
    return hi


def _mse_weights(E: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """WMMSE receivers/weights from ``E = h W: [..., user, user]``.

    Returns:
        omega: [..., user] MSE weights ``T/(T-S)``; d: [..., user] ``omega |u|^2``; phase: [..., user] complex
        ``u/|u|`` (0 where u = 0); rate: [...] sum rate (bit/s/Hz) of the current W.
    """
    sig, interf = _sig_interf(E)
    noise = interf + 1.0  # T - S
    total = sig + noise
    e = torch.diagonal(E, dim1=-2, dim2=-1)
    mag = e.abs()
    phase = torch.where(mag > 0, e / mag.clamp_min(torch.finfo(mag.dtype).tiny).to(e.dtype), torch.zeros_like(e))
    omega = total / noise
    rate = torch.log2(omega).sum(-1)  # 1 + SINR = T / (T - S)
    return omega, sig / (total * noise), phase, rate


def _iterate_gram(G: torch.Tensor, p: torch.Tensor, B: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``iters`` WMMSE steps in Gram space.

    Per step: ``B <- D^{1/2} Q (mu + Lam)^{-1} Q^H Y`` with ``D^{1/2} G D^{1/2} = Q Lam Q^H``, ``Y = diag(sqrt(omega)
    u/|u|)``, the push-through form of ``(mu I + h^H D h)^{-1} h^H diag(omega u)``; power ``sum lam phi/(mu+lam)^2``.

    Args:
        G: [..., user, user].  p: [...].  B: [..., user, user] initial precoder (W = h^H B).
    Returns:
        B: [..., user, user]; history: [..., iters + 1] sum rates.
    """
    hist = []
    for _ in range(iters):
        omega, d, phase, rate = _mse_weights(G @ B)
        hist.append(rate)
        sd = torch.sqrt(d)
        lam, Q = eigh(sd[..., :, None].to(G.dtype) * G * sd[..., None, :].to(G.dtype))
        phi = ((Q.real.square() + Q.imag.square()) * omega[..., :, None]).sum(-2)  # [..., i]
        mu = _bisect_mu(lam, lam.clamp_min(0.0) * phi, p)
        y = torch.sqrt(omega).to(G.dtype) * phase
        inner = (Q.mH * y[..., None, :]) / (mu[..., None] + lam.clamp_min(0.0))[..., :, None].to(G.dtype)
        B = _scale_to(G, sd[..., :, None].to(G.dtype) * (Q @ inner), p)
    hist.append(_mse_weights(G @ B)[3])
    return B, torch.stack(hist, -1)


def _iterate_antenna(h: torch.Tensor, p: torch.Tensor, W: torch.Tensor,
                     iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``iters`` WMMSE steps in antenna space: ``W <- (mu I + h^H D h)^{-1} h^H diag(omega u)``, ``ant x ant`` eigh.

    Args:
        h: [..., user, ant].  p: [...].  W: [..., ant, user] initial precoder.
    Returns:
        W: [..., ant, user]; history: [..., iters + 1] sum rates.
    """
    hist = []
    for _ in range(iters):
        omega, d, phase, rate = _mse_weights(h @ W)
        hist.append(rate)
        lam, U = eigh(h.mH @ (d[..., :, None].to(h.dtype) * h))
        u = phase * (torch.sqrt(d / omega)).to(h.dtype)  # MMSE receiver u_k (|u|^2 = d / omega)
        X = U.mH @ (h.mH * (omega.to(h.dtype) * u)[..., None, :])  # U^H h^H diag(omega u)
        mu = _bisect_mu(lam, (X.real.square() + X.imag.square()).sum(-1), p)
        W = U @ (X / (mu[..., None] + lam.clamp_min(0.0))[..., :, None].to(h.dtype))
        W = W * torch.sqrt(p / power_of(W))[..., None, None].to(h.dtype)
    hist.append(_mse_weights(h @ W)[3])
    return W, torch.stack(hist, -1)


def _check_wmmse_args(init: str, iters: int, n_random_inits: int, rng: torch.Generator | None) -> None:
    check(init in ("rzf", "mrt", "random"), "init", "one of 'rzf', 'mrt', 'random'", init)
    check(isinstance(iters, int) and iters >= 0, "iters", "an integer >= 0", iters)
    check(isinstance(n_random_inits, int) and n_random_inits >= 0, "n_random_inits", "an integer >= 0",
          n_random_inits)
    needs_rng = init == "random" or n_random_inits > 0
    check(not needs_rng or isinstance(rng, torch.Generator), "rng",
          "a torch.Generator when init='random' or n_random_inits > 0", rng)


def wmmse_gram(G: torch.Tensor, p: float | torch.Tensor, iters: int = 20, init: str = "rzf",
               n_random_inits: int = 0, rng: torch.Generator | None = None,
               return_history: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """WMMSE (Shi et al. 2011) for the MISO downlink in Gram space: returns ``B`` with ``W = h^H B``.

    All inits (``init`` plus ``n_random_inits`` random ones) run together, batched; per sample the one with the
    best final sum rate is kept.

    Args:
        G: [..., user, user] complex Gram matrix.  p: float or [...] power budget.
        iters: WMMSE iterations.  init: "rzf" | "mrt" | "random" (the first init).
        n_random_inits: extra random inits (needs ``rng``).  rng: generator for random inits.
        return_history: also return the sum rate after each iteration.
    Returns:
        B: [..., user, user] complex; with ``return_history`` also ``history: [..., iters + 1]`` real, the best
        sum rate over the inits after 0..iters iterations (non-decreasing).
    """
    _check_wmmse_args(init, iters, n_random_inits, rng)
    check(G.is_complex() and G.dim() >= 2 and G.shape[-1] == G.shape[-2], "G",
          "a complex tensor [..., user, user]", tuple(G.shape))
    out_dtype = G.dtype
    G = G.to(torch.complex128)  # K x K work in double precision (see wmmse)
    pt = as_power(p, G.shape[:-2], G)
    inits = [_init_gram(G, pt, init, rng)] + [_init_gram(G, pt, "random", rng) for _ in range(n_random_inits)]
    B = torch.stack(inits, 0)  # [init, ..., user, user]
    B, hist = _iterate_gram(G.unsqueeze(0), pt.unsqueeze(0), B, iters)
    best = hist[..., -1].argmax(0)  # [...]
    idx = best[None, ..., None, None].expand((1,) + tuple(B.shape[1:]))
    B = torch.gather(B, 0, idx)[0].to(out_dtype)
    if return_history:
        return B, hist.amax(0).to(B.real.dtype)
    return B


def wmmse(h: torch.Tensor, p: float | torch.Tensor, iters: int = 20, init: str = "rzf", n_random_inits: int = 0,
          rng: torch.Generator | None = None,
          return_history: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """WMMSE sum-rate precoder (Gram-space inside, batched; see ``wmmse_gram`` for the arguments).

    The Gram matrix and all K x K work are in complex128 whatever the input dtype: in float32 the near-null
    interference directions at high SNR lose precision and the iterates can collapse onto one user (seen at 4x4,
    20 dB after ~50 iterations). The cost is small (K x K matrices); ``W`` takes ``h``'s dtype.

    Args:
        h: [..., user, ant] complex.  p: float or [...].
    Returns:
        W: [..., ant, user] complex (and ``history: [..., iters + 1]`` with ``return_history``).
    """
    check_channel(h)
    out = wmmse_gram(gram(h.to(torch.complex128)), p, iters, init, n_random_inits, rng, return_history)
    B = out[0] if return_history else out
    W = h.mH @ B.to(h.dtype)
    return (W, out[1].to(h.real.dtype)) if return_history else W


def wmmse_antenna(h: torch.Tensor, p: float | torch.Tensor, iters: int = 20, init: str = "rzf",
                  return_history: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Reference antenna-space WMMSE (``ant x ant`` eigendecomposition per iteration), batched; deterministic inits.

    Args:
        h: [..., user, ant] complex.  p: float or [...].  iters: iterations.  init: "rzf" | "mrt".
    Returns:
        W: [..., ant, user] complex (and ``history: [..., iters + 1]`` with ``return_history``).
    """
    check_channel(h)
    check(init in ("rzf", "mrt"), "init", "'rzf' or 'mrt' for the antenna-space reference", init)
    pt = as_power(p, h.shape[:-2], h)
    W = rzf(h, pt) if init == "rzf" else mrt(h, pt)
    W, hist = _iterate_antenna(h, pt, W, iters)
    return (W, hist) if return_history else W


# ----------------------------------------------------------------------------------------------- structure
def _split_lam_p(lam_p: torch.Tensor, p: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    check(isinstance(lam_p, torch.Tensor) and lam_p.dim() >= 2 and tuple(lam_p.shape[-2:]) == (K, 2), "lam_p",
          f"a real tensor [..., user={K}, 2]", tuple(getattr(lam_p, "shape", ())))
    check(not lam_p.is_complex(), "lam_p", "a real tensor", lam_p.dtype)
    return lam_p[..., 0] * p[..., None], lam_p[..., 1] * p[..., None]


def _structure_gram(G: torch.Tensor, lam: torch.Tensor, pk: torch.Tensor) -> torch.Tensor:
    """``B: [..., user, user]`` with ``W = h^H B`` of the optimal structure; ``lam, pk: [..., user]`` unnormalised.

    ``v_k = h^H A e_k`` with ``A = (I + Lam G)^{-1}`` (push-through), ``||v_k||^2 = [A^H G A]_kk``.
    """
    K = G.shape[-1]
    M = _eye(K, G) + lam[..., :, None].to(G.dtype) * G
    A = torch.linalg.solve(M, _eye(K, G).expand(M.shape))  # (I + Lam G)^{-1}; B batched (an unbatched B
    # of ndim A.ndim - 1 would be read as a batch of vectors by torch.linalg.solve)
    norm2 = torch.diagonal(A.mH @ G @ A, dim1=-2, dim2=-1).real.clamp_min(torch.finfo(lam.dtype).tiny)
    return A * torch.sqrt(pk.clamp_min(0.0) / norm2)[..., None, :].to(G.dtype)


def precoder_from_structure(h: torch.Tensor, lam_p: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """Precoder of the optimal structure ``w_k = sqrt(p_k) v_k / ||v_k||``, computed in Gram space.

    Args:
        h: [..., user, ant] complex.  lam_p: [..., user, 2] real, normalised (lam/p, p_k/p).  p: float or [...].
    Returns:
        W: [..., ant, user] complex with ``||W||_F^2 = p * sum_k lam_p[..., k, 1]``.
    """
    check_channel(h)
    pt = as_power(p, h.shape[:-2], h)
    lam, pk = _split_lam_p(lam_p.to(pt.dtype), pt, h.shape[-2])
    return h.mH @ _structure_gram(gram(h), lam, pk)


def wmmse_from_structure(h: torch.Tensor, lam_p: torch.Tensor, p: float | torch.Tensor, iters: int) -> torch.Tensor:
    """``iters`` WMMSE steps (Gram space, complex128) started from the optimal-structure precoder of ``lam_p``.

    WMMSE never lowers the sum rate at the design power ``p``, so this refines any (lambda, p) guess towards a
    stationary point near it (``iters = 0``: the structure's precoder itself).

    Args:
        h: [..., user, ant] complex.  lam_p: [..., user, 2] real, normalised.  p: float or [...] design power.
        iters: WMMSE iterations (>= 0).
    Returns:
        W: [..., ant, user] in ``h``'s dtype, ``||W||_F^2 = p``.
    """
    check_channel(h)
    check(isinstance(iters, int) and iters >= 0, "iters", "an integer >= 0", iters)
    h64 = h.to(torch.complex128)
    G = gram(h64)
    pt = as_power(p, h.shape[:-2], h64)
    lam, pk = _split_lam_p(lam_p.to(pt.dtype), pt, h.shape[-2])
    B, _ = _iterate_gram(G, pt, _scale_to(G, _structure_gram(G, lam, pk), pt), iters)
    return (h64.mH @ B).to(h.dtype)


def structure_sinr(G: torch.Tensor, lam_p: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """SINRs of the optimal-structure precoder from the Gram matrix and ``lam_p`` alone (differentiable).

    Args:
        G: [..., user, user] complex Gram matrix.  lam_p: [..., user, 2] real, normalised.  p: float or [...].
    Returns:
        sinr: [..., user] real, in the real dtype of ``G``; gradients flow to ``lam_p`` (and ``G``).
    """
    check(isinstance(G, torch.Tensor) and G.is_complex() and G.dim() >= 2 and G.shape[-1] == G.shape[-2], "G",
          "a complex tensor [..., user, user]", getattr(G, "shape", type(G).__name__))
    pt = as_power(p, G.shape[:-2], G)
    lam, pk = _split_lam_p(lam_p.to(pt.dtype), pt, G.shape[-1])
    return sinr_gram(G, _structure_gram(G, lam, pk))


def structure_sinr_at(G: torch.Tensor, lam_p: torch.Tensor, p_design: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """SINRs of the optimal structure rendered at a design power ``p_design`` (the direction of ``v_k`` depends on
    it) and transmitted with the full budget ``p`` (differentiable; the latent form's transmitter, which knows its
    power but not the noise level).

    Args:
        G: [..., user, user] complex.  lam_p: [..., user, 2] real, normalised.  p_design, p: [...] real.
    Returns:
        sinr: [..., user] real, in the real dtype of ``G``.
    """
    pd = as_power(p_design, G.shape[:-2], G)
    lam, pk = _split_lam_p(lam_p.to(pd.dtype), pd, G.shape[-1])
    return sinr_gram(G, _scale_to(G, _structure_gram(G, lam, pk), as_power(p, G.shape[:-2], G)))


def structure_params(h: torch.Tensor, W: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """Optimal-structure parameters of a (WMMSE-stationary) precoder, normalised label format.

    At a WMMSE fixed point ``W = (mu I + h^H D h)^{-1} h^H diag(omega u)`` with ``D = diag(omega |u|^2)``, i.e. the
    structure with ``lam = diag(D) / mu``; ``u``, ``omega`` are recomputed from ``W`` itself and ``p_k = ||w_k||^2``.
    Taking the trace of ``W^H (mu W + h^H D h W) = W^H h^H diag(omega u)`` gives ``mu p = sum_k omega_k |u_k|^2``
    at a fixed point, so ``sum lam = p`` holds exactly there and ``lam_k / p = D_k / sum D``. The round trip
    ``precoder_from_structure(h, structure_params(h, W, p), p)`` is exact at stationarity; on unconverged iterates
    it is approximate (4x4, 10 dB: WMMSE-20 mean 1.5e-4 / max 1.5e-2 relative sum-rate error, WMMSE-100 2e-6 / 2e-3;
    4x4, 20 dB converges slowly: WMMSE-20 mean 9e-3, WMMSE-100 2e-4).

    Args:
        h: [..., user, ant] complex.  W: [..., ant, user] complex.  p: float or [...].
    Returns:
        lam_p: [..., user, 2] real: (lam_k / p, p_k / p), each column summing to 1 over users (the power column is
        normalised by ``||W||_F^2``, equal to ``p`` for the full-power solvers here).
    """
    _check_w(h, W)
    as_power(p, h.shape[:-2], h)
    d = _mse_weights(h @ W)[1]  # omega_k |u_k|^2 = S_k / (T_k (T_k - S_k))
    colp = (W.real.square() + W.imag.square()).sum(-2)
    tiny = torch.finfo(d.dtype).tiny
    return torch.stack([d / d.sum(-1, keepdim=True).clamp_min(tiny),
                        colp / colp.sum(-1, keepdim=True).clamp_min(tiny)], -1)


def scale_to_power(h: torch.Tensor, W: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """``W`` scaled to the full power budget ``||W||_F^2 = p`` (direction kept; differentiable).

    Args:
        h: [..., user, ant] complex (batch shape and dtype reference).  W: [..., ant, user] complex.  p: float or [...].
    Returns:
        W: [..., ant, user] complex.
    """
    _check_w(h, W)
    pt = as_power(p, h.shape[:-2], h)
    return W * torch.sqrt(pt / power_of(W).clamp_min(torch.finfo(pt.dtype).tiny))[..., None, None].to(W.dtype)


# ----------------------------------------------------------------------------------------------- SNR from labels
def structure_residual(G: torch.Tensor, lam_p: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """How far a normalised WMMSE structure label is from a WMMSE fixed point when rendered at the power ``p``.

    At a fixed point ``lam_k / p = D_k / sum_j D_j`` with ``D_k = omega_k |u_k|^2`` recomputed from the rendered
    precoder (``structure_params``); the direction ``(I + p sum_j (lam_j/p) h_j^H h_j)^{-1} h_k^H`` depends on ``p``,
    so the residual vanishes at the label's own power and (below the interference-limited regime) nowhere else.

    Args:
        G: [..., user, user] complex.  lam_p: [..., user, 2] real, normalised.  p: [...] real (broadcastable).
    Returns:
        residual: [...] real, ``sum_k (D_k / sum D - lam_p[k, 0])^2``.
    """
    lam, pk = _split_lam_p(lam_p.to(p.dtype), p, G.shape[-1])
    d = _mse_weights(G @ _structure_gram(G, lam, pk))[1]
    d = d / d.sum(-1, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
    return (d - lam_p[..., 0].to(d.dtype)).square().sum(-1)


GOLDEN = 0.5 * (5.0 ** 0.5 - 1.0)   # golden-section ratio


def _argmin_db(residual, x_db: torch.Tensor) -> torch.Tensor:
    """Per column the candidate of ``x_db: [cand, ...]`` with the least ``residual(p [cand, ...])``: [...]."""
    r = torch.nan_to_num(residual(torch.pow(10.0, x_db / 10.0)), nan=float("inf"))
    return torch.gather(x_db, 0, r.argmin(0, keepdim=True))[0]


def _golden_db(residual, a: torch.Tensor, b: torch.Tensor, iters: int) -> torch.Tensor:
    """Batched golden-section minimisation of ``residual`` over ``[a, b]`` (dB, [...] each): the bracket's middle."""
    f = lambda x: torch.nan_to_num(residual(torch.pow(10.0, x / 10.0)[None])[0], nan=float("inf"))  # noqa: E731
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        left = fc < fd                                  # the minimum lies in [a, d]: d <- c, new c
        a, b = torch.where(left, a, c), torch.where(left, d, b)
        x = torch.where(left, b - GOLDEN * (b - a), a + GOLDEN * (b - a))
        fx = f(x)
        c, d, fc, fd = (torch.where(left, x, d), torch.where(left, c, x),
                        torch.where(left, fx, fd), torch.where(left, fc, fx))
    return 0.5 * (a + b)


def fit_power_db(residual, lead: torch.Size, lo_db: float = -15.0, hi_db: float = 40.0, step_db: float = 2.5,
                 iters: int = 20, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Batched 1-D minimisation over a power in dB: a grid of ``step_db`` in ``[lo_db, hi_db]``, then golden-section
    search within one step either side of the best grid point (bracket shrinks by 0.618 per iteration).

    Args:
        residual: callable, ``p: [cand, *lead]`` (linear power) -> ``[cand, *lead]`` real to minimise.
        lead: batch shape of the fit.  lo_db, hi_db: search range.  step_db: grid step.  iters: golden steps.
    Returns:
        x_db: [*lead] in ``[lo_db, hi_db]`` (resolution ``2 step_db 0.618^iters``, 4e-4 dB by default).
    """
    check(lo_db < hi_db, "lo_db/hi_db", "lo_db < hi_db", (lo_db, hi_db))
    check(step_db > 0, "step_db", "a positive step in dB", step_db)
    grid = torch.arange(lo_db, hi_db + 0.5 * step_db, step_db, dtype=dtype)
    best = _argmin_db(residual, grid.reshape((-1,) + (1,) * len(lead)).expand((-1,) + tuple(lead)))
    return _golden_db(residual, (best - step_db).clamp_min(lo_db), (best + step_db).clamp_max(hi_db), iters)


def _check_demos(h: torch.Tensor, lam_p: torch.Tensor) -> None:
    check_channel(h)
    check(h.dim() >= 3 and h.shape[-3] >= 1, "h", "demonstrations [..., demo >= 1, user, ant]", tuple(h.shape))
    check(isinstance(lam_p, torch.Tensor) and tuple(lam_p.shape) == tuple(h.shape[:-1]) + (2,), "lam_p",
          f"shape [..., demo, user, 2] = {tuple(h.shape[:-1]) + (2,)} matching h", tuple(getattr(lam_p, "shape", ())))


MISFIT_FLOOR = 1e-12     # residual floor of float32 labels (round-off ~ (6e-8)^2 per entry)


def _residual_db(residual, x_db: torch.Tensor) -> torch.Tensor:
    """``residual`` at the powers ``x_db: [...]`` (dB), NaN as inf: [...]."""
    return torch.nan_to_num(residual(torch.pow(10.0, x_db / 10.0)[None])[0], nan=float("inf"))


def fit_demos_db(residual, lead: torch.Size, lo_db: float = -15.0, hi_db: float = 40.0) -> torch.Tensor:
    """One power (dB) shared by demonstrations: each demo's own minimiser (``fit_power_db``), then that of the demo
    whose label is most self-consistent, i.e. least relative misfit ``(r* + floor) / (max(r(lo), r(hi)) - r*)``.
    A label from a solver stopped short of its fixed point (WMMSE at high SNR) fits no power exactly; its minimiser
    is off by about ``sqrt(r* / curvature)`` and the curvature scales with the residual's spread, so the choice
    follows the best-determined demo and the error falls as demos are added. Demos whose residual does not depend
    on the power (one active user) carry no information.

    Args:
        residual: callable, ``p: [cand, *lead]`` -> ``[cand, *lead]``.  lead: ``[..., demo]``.
    Returns:
        x_db: [...] float64; NaN where no demo carries information.
    """
    x = fit_power_db(residual, lead, lo_db, hi_db)                                        # [..., demo]
    r = _residual_db(residual, x)
    spread = torch.maximum(_residual_db(residual, torch.full_like(x, lo_db)),
                           _residual_db(residual, torch.full_like(x, hi_db))) - r
    score = torch.where(spread > 100.0 * MISFIT_FLOOR, (r + MISFIT_FLOOR) / spread, torch.full_like(r, float("inf")))
    best = torch.gather(x, -1, score.argmin(-1, keepdim=True))[..., 0]
    return torch.where(torch.isfinite(score).any(-1), best, torch.full_like(best, float("nan")))


def fit_snr_db(h: torch.Tensor, lam_p: torch.Tensor, lo_db: float = -15.0, hi_db: float = 40.0) -> torch.Tensor:
    """SNR (dB) shared by demonstrations whose labels are (near) WMMSE fixed points: ``fit_demos_db`` on the
    ``structure_residual`` (K x K work in double precision). Measured on 32 TR 38.901 UMa NLOS episodes, 8 x 8,
    K = 8, -5..25 dB, WMMSE-100 labels: mean |error| 0.15 / 0.032 / 0.012 / 0.013 dB with 1 / 2 / 4 / 16 demos
    (max 2.9 / 0.52 / 0.15 / 0.31 dB); about 1 s for 64 episodes x 16 demos on one core.

    Args:
        h: [..., demo, user, ant] complex.  lam_p: [..., demo, user, 2] real, normalised WMMSE structure labels.
        lo_db, hi_db: search range (wide and fixed: no knowledge of the system's SNR range).
    Returns:
        snr_db: [...] float32; NaN where no demo carries information (each has a single active user).
    """
    _check_demos(h, lam_p)
    G = gram(h.to(torch.complex128))
    lam_p = lam_p.to(torch.float64)
    return fit_demos_db(lambda p: structure_residual(G, lam_p, p), h.shape[:-2], lo_db, hi_db).float()


def maxmin_sinr(h: torch.Tensor, p: float | torch.Tensor, tol: float = 1e-3):  # -> maxmin.MaxMinResult
    """Optimal max-min SINR precoder ``(W, lam_p, sinr_db)``; see ``icwm.wireless.maxmin.maxmin_sinr``."""
    from icwm.wireless import maxmin
    return maxmin.maxmin_sinr(h, p, tol)

