"""Shared metrics: closed-form values on hand-made inputs."""
import math

import pytest
import torch

from icwm.wireless import metrics


def test_nmse_matches_definition_per_sample():
    t = torch.tensor([[1 + 1j, 2 + 0j], [1j, -1 + 0j]], dtype=torch.complex64)
    p = t.clone()
    p[0, 0] += 1.0                                       # |e|^2 = 1 over |t|^2 = 2 + 4
    p[1] *= 0.5                                          # |e|^2 = 0.25 * 2 over |t|^2 = 2
    out = metrics.nmse(p, t, dims=-1)
    torch.testing.assert_close(out, torch.tensor([1 / 6, 0.25]))
    torch.testing.assert_close(metrics.nmse_db(p, t, dims=(-1,)), 10 * torch.log10(torch.tensor([1 / 6, 0.25])))


def test_nmse_reduces_only_given_dims_and_rejects_shape_mismatch():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 4, 5, generator=g)
    p = t + 0.1 * torch.randn(3, 4, 5, generator=g)
    per = metrics.nmse(p, t, dims=(-2, -1))
    assert per.shape == (3,)
    torch.testing.assert_close(per[1], ((p[1] - t[1]) ** 2).sum() / (t[1] ** 2).sum())
    with pytest.raises(ValueError, match="pred"):
        metrics.nmse(p[:, :3], t, dims=-1)


def test_mean_db_averages_linear_values_first():
    x = torch.tensor([1.0, 0.01])
    assert metrics.mean_db(x).item() == pytest.approx(10 * math.log10(0.505), abs=1e-5)
    assert metrics.mean_db(torch.ones(2, 3) * 0.1, dim=-1).shape == (2,)


def test_ser_counts_errors_over_slot_user():
    idx = torch.zeros(2, 4, 2, dtype=torch.int64)
    hat = idx.clone()
    hat[0, 0, 0] = 3
    hat[1, :, 1] = 5
    torch.testing.assert_close(metrics.ser(hat, idx), torch.tensor([1 / 8, 4 / 8]))


def test_topk_accuracy():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.2], [0.9, 0.05, 0.03, 0.02]])
    label = torch.tensor([2, 3])
    torch.testing.assert_close(metrics.topk_accuracy(scores, label, 1), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(metrics.topk_accuracy(scores, label, 2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(metrics.topk_accuracy(scores, label, 4), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="k"):
        metrics.topk_accuracy(scores, label, 5)


def test_mae_and_spectral_efficiency():
    err = metrics.mae(torch.tensor([1.0, 5.0]), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(err, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(metrics.mae(torch.ones(2, 3), torch.zeros(2, 3), dims=-1), torch.ones(2))
    se = metrics.spectral_efficiency(torch.tensor([1.0, 3.0]), 1.0)
    torch.testing.assert_close(se, torch.tensor([1.0, 2.0]))
    se = metrics.spectral_efficiency(torch.tensor([0.5]), torch.tensor([14.0]))
    torch.testing.assert_close(se, torch.tensor([3.0]))
