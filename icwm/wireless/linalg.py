"""Linear-algebra helpers shared by the solvers.

CUDA's batched Hermitian eigensolver stops with ``LinAlgError`` on some nearly degenerate matrices that LAPACK
decomposes (seen on an H200 in the precoding heads' WMMSE refinement, 2026-12-04), so ``eigh`` retries those batches
on the CPU instead of failing an evaluation that runs on a GPU.
"""
from __future__ import annotations

import torch

__all__ = ["eigh", "HOST_DEVICES"]

HOST_DEVICES = ("cpu",)       # device types whose own solver is final (no retry elsewhere)


def eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` that falls back to the CPU when an accelerator's solver does not converge.

    Args:
        a: [..., n, n] Hermitian (real or complex), on any device.
    Returns:
        (eigenvalues [..., n] real ascending, eigenvectors [..., n, n]) on ``a``'s device; the CPU's error is raised
        where LAPACK fails too, and a CPU tensor's error is raised as it is.
    """
    try:
        return torch.linalg.eigh(a)
    except torch.linalg.LinAlgError:
        if a.device.type in HOST_DEVICES:
            raise
    lam, vec = torch.linalg.eigh(a.cpu())
    return lam.to(a.device), vec.to(a.device)
