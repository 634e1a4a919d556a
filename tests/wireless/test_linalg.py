"""icwm.wireless.linalg.eigh: LAPACK's answer, and a retry on the CPU when an accelerator's solver gives up."""
import pytest
import torch

from icwm.wireless import linalg


def _hermitian(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 4, dtype=torch.complex128, generator=g)
    return x @ x.mH


def test_eigh_matches_torch_and_reconstructs():
    a = _hermitian(0)
    lam, vec = linalg.eigh(a)
    ref_lam, _ = torch.linalg.eigh(a)
    torch.testing.assert_close(lam, ref_lam)
    torch.testing.assert_close(vec @ torch.diag_embed(lam.to(vec.dtype)) @ vec.mH, a)


def test_eigh_retries_on_the_host_when_the_device_solver_fails(monkeypatch):
    a = _hermitian(1)
    real = torch.linalg.eigh
    calls = []

    def flaky(x):          # the first call fails as CUDA's batched solver did on a nearly degenerate batch
        calls.append(x.device.type)
        if len(calls) == 1:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return real(x)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    monkeypatch.setattr(linalg, "HOST_DEVICES", ())          # treat the input's device as an accelerator
    lam, vec = linalg.eigh(a)
    assert len(calls) == 2
    torch.testing.assert_close(vec @ torch.diag_embed(lam.to(vec.dtype)) @ vec.mH, a)


def test_eigh_recomputes_non_finite_answers_of_the_device_solver(monkeypatch):
    a = _hermitian(3)
    real = torch.linalg.eigh

    def silent(x):         # a device solver that returns NaN for batch element 1 without raising
        lam, vec = real(x)
        if x.shape[0] == 3:
            lam, vec = lam.clone(), vec.clone()
            lam[1], vec[1] = float("nan"), float("nan")
        return lam, vec

    monkeypatch.setattr(torch.linalg, "eigh", silent)
    monkeypatch.setattr(linalg, "HOST_DEVICES", ())
    lam, vec = linalg.eigh(a)
    assert torch.isfinite(lam).all() and torch.isfinite(vec).all()
    torch.testing.assert_close(vec @ torch.diag_embed(lam.to(vec.dtype)) @ vec.mH, a)


def test_eigh_raises_on_the_host(monkeypatch):
    def broken(x):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", broken)
    with pytest.raises(torch.linalg.LinAlgError):
        linalg.eigh(_hermitian(2))
