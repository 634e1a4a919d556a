"""Beams: DFT codebook properties, sweeps, and sub-6 GHz angle mapping on single-path channels."""
import math

import pytest
import torch

from icwm.wireless import beams


def test_dft_codebook_orthonormal_and_unit_norm():
    cb = beams.dft_codebook(16, 16)
    assert cb.shape == (16, 16) and cb.dtype == torch.complex64
    torch.testing.assert_close(cb @ cb.mH, torch.eye(16, dtype=torch.complex64), atol=1e-5, rtol=0)
    over = beams.dft_codebook(8, 32)
    torch.testing.assert_close(over.abs().pow(2).sum(-1), torch.ones(32))
    with pytest.raises(ValueError, match="n_beams"):
        beams.dft_codebook(8, 4)


@pytest.mark.parametrize("n_ant,n_beams", [(16, 16), (64, 256)])
def test_best_beam_of_steering_vector_at_codebook_angle(n_ant, n_beams):
    cb = beams.dft_codebook(n_ant, n_beams)
    b = torch.tensor([0, 3, n_beams // 2, n_beams - 1])
    u = beams.beam_spatial_freq(n_beams)[b]
    h = beams.steering_vector(n_ant, u)[:, None, :].expand(-1, 4, -1)       # [beam, sc, ant]
    gains = beams.beam_gains(h, cb)
    assert gains.shape == (4, n_beams)
    torch.testing.assert_close(gains.gather(-1, b[:, None])[:, 0], torch.full((4,), float(n_ant)))
    torch.testing.assert_close(beams.best_beam(h, cb), b)


def _single_path(sin_t, n_ant, n_sc, spacing, delay_sc, g):
    """Single plane wave with a delay phase ramp over subcarriers and a random complex gain: [..., sc, ant]."""
    a = beams.steering_vector(n_ant, spacing * sin_t)                         # [..., ant]
    ramp = torch.exp(-2j * math.pi * torch.arange(n_sc) * delay_sc).to(torch.complex64)
    gain = torch.complex(torch.randn(sin_t.shape, generator=g), torch.randn(sin_t.shape, generator=g))
    return gain[..., None, None] * ramp[:, None] * a[..., None, :]


def test_sub6_angle_map_recovers_mmwave_beam_for_single_path(rng):
    sin_t = torch.rand(200, generator=rng) * 1.8 - 0.9                      # |theta| < ~64 deg
    h6 = _single_path(sin_t, 8, 32, 0.5, 0.013, rng)
    hm = _single_path(sin_t, 64, 16, 0.5, 0.21, rng)
    truth = beams.best_beam(hm, beams.dft_codebook(64, 256))
    est = beams.sub6_angle_map(h6, 256)
    torch.testing.assert_close(beams.estimate_spatial_freq(h6), 0.5 * sin_t, atol=2e-4, rtol=0)
    # beams are 1/256 apart in u; an angle error of 2e-4 can flip the choice only right at a beam boundary
    assert (est == truth).float().mean() > 0.97 and ((est - truth).abs() <= 1).all()
    torch.testing.assert_close(beams.sub6_angle_map(h6, beams.dft_codebook(64, 256)), est)


def test_sub6_angle_map_with_different_spacings(rng):
    sin_t = torch.tensor([-0.5, 0.1, 0.7])
    h6 = _single_path(sin_t, 8, 8, 0.4, 0.0, rng)                           # 0.4-lambda sub-6 array
    hm = _single_path(sin_t, 32, 8, 0.5, 0.0, rng)
    cb = beams.dft_codebook(32, 64)
    torch.testing.assert_close(beams.sub6_angle_map(h6, 64, spacing_sub6=0.4), beams.best_beam(hm, cb))


def test_sub6_beam_scores_rank_the_true_beam_first(rng):
    sin_t = beams.beam_spatial_freq(128)[torch.tensor([10, 64, 100])] * 2          # exactly on mmWave beams
    h6 = _single_path(sin_t, 8, 8, 0.5, 0.05, rng)
    scores = beams.sub6_beam_scores(h6, 128)
    assert scores.shape == (3, 128)
    torch.testing.assert_close(scores.argmax(-1), torch.tensor([10, 64, 100]))
    torch.testing.assert_close(scores.amax(-1), torch.zeros(3))
    # scores fall off monotonically around the peak inside the sub-6 main lobe (+-2/8 in sin, +-16 beams)
    s = scores[1]
    assert (s[64:64 + 15].diff() < 0).all() and (s[50:65].diff() > 0).all()


@pytest.mark.parametrize("n_ant,n_beams", [(8, 8), (16, 64), (64, 256)])
def test_dft_beam_gains_equal_the_codebook_product(n_ant, n_beams):
    g = torch.Generator().manual_seed(n_ant)
    h = torch.complex(torch.randn(3, 5, n_ant, generator=g), torch.randn(3, 5, n_ant, generator=g))
    ref = beams.beam_gains(h, beams.dft_codebook(n_ant, n_beams))
    fast = beams.dft_beam_gains(h, n_beams)
    assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-5 * float(ref.max()))
    assert torch.equal(fast.argmax(-1), ref.argmax(-1))
