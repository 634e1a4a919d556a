"""Linear-algebra helpers shared by the solvers.

``eigh`` guards against an accelerator's batched Hermitian eigensolver, which can return a non-finite decomposition
of a finite, nearly degenerate matrix without raising, or refuse a batch that LAPACK decomposes: such matrices are
recomputed on the CPU (seen on an H200 in the pre_sr head's WMMSE refinement: docs/results/gpu_s23/README.md).
"""
from __future__ import annotations

import torch

__all__ = ["eigh", "HOST_DEVICES"]

HOST_DEVICES = ("cpu",)       # device types whose own solver is final (no retry elsewhere)


def _finite_rows(t: torch.Tensor, batch_dims: int) -> torch.Tensor:
    return torch.isfinite(t.reshape(*t.shape[:batch_dims], -1)).all(-1)


def eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` that falls back to the CPU where an accelerator's solver fails.

    Args:
        a: [..., n, n] Hermitian (real or complex), on any device.
    Returns:
        (eigenvalues [..., n] real ascending, eigenvectors [..., n, n]) on ``a``'s device. On an accelerator, a
        ``LinAlgError`` or a non-finite result for a finite matrix sends that matrix to the CPU; on the CPU (or where
        LAPACK fails too) the error is raised.
    """
    if a.device.type in HOST_DEVICES:
        return torch.linalg.eigh(a)
    try:
        lam, vec = torch.linalg.eigh(a)
    except torch.linalg.LinAlgError:
        lam, vec = torch.linalg.eigh(a.cpu())
        return lam.to(a.device), vec.to(a.device)
    nb = a.dim() - 2
    redo = _finite_rows(a, nb) & ~(_finite_rows(lam, nb) & _finite_rows(vec, nb))
    if bool(redo.any()):
        lam_c, vec_c = torch.linalg.eigh(a[redo].cpu())
        lam, vec = lam.clone(), vec.clone()
        lam[redo], vec[redo] = lam_c.to(a.device), vec_c.to(a.device)
    return lam, vec
