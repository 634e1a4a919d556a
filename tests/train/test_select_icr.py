"""The in-context fit's window selection (icwm/train/select_icr.py) on synthetic multipath ce episodes."""
from __future__ import annotations

import json
import math

import pytest
import torch

from icwm.data.shards import FORMAT
from icwm.model.config import ModelConfig
from icwm.train.select_icr import choose, main, training_batches, width_curve

S, SPACING, N, TAPS = 32, 4, 4, 3


def ce_batch(g: torch.Generator, b: int = 8, p: int = 13, noise: float = 0.05) -> dict:
    """ce episodes [B, P, 1, ...]: per episode fixed tap delays (one link's statistics), per pair and antenna
    random tap gains; LS pilots every SPACING subcarriers with noise."""
    delays = torch.rand(b, 1, TAPS, 1, generator=g) * 6.0                          # [B, 1, L, 1] samples
    s = torch.arange(S, dtype=torch.float32)
    steer = torch.exp(-2j * math.pi * delays * s / S)                               # [B, 1, L, S]
    gains = torch.complex(*torch.randn(2, b, p, TAPS, N, generator=g)) / math.sqrt(2 * TAPS)
    h = torch.einsum("bpln,bqls->bpsn", gains, steer.to(torch.complex64))[:, :, None]   # [B, P, 1, S, N]
    z = torch.complex(*torch.randn(2, b, p, 1, S // SPACING, N, generator=g)) * noise
    return {"h_ls": h[:, :, :, ::SPACING] + z, "h": h, "snr_db": torch.full((b, p), 20.0), "task": "ce"}


def test_fit_learns_from_demonstrations_and_wider_windows_help():
    g = torch.Generator().manual_seed(0)
    batches = [ce_batch(g) for _ in range(3)]
    curves = width_curve(batches, "ce", [0, 3], ModelConfig.flavour("debug"))
    assert curves[0].shape == (24, 13)
    for c in curves.values():
        m = c.mean(0)
        assert torch.allclose(c[:, 0], curves[0][:, 0])          # pair 0 has no demonstrations: the first guess
        assert m[12] < m[0] - 3.0                                 # 12 demonstrations improve on the first guess
    assert curves[3].mean(0)[12] < curves[0].mean(0)[12] - 3.0   # nearest pilot alone cannot interpolate
    assert choose(curves) == 3


def test_choose_takes_the_smallest_width_not_significantly_worse():
    g = torch.Generator().manual_seed(1)
    noise = lambda: 0.01 * torch.randn(200, 5, generator=g)  # noqa: E731
    curves = {1: noise() + 1.0, 2: noise() + 0.0005, 4: noise()}
    assert choose(curves) == 2
    curves[2] = curves[4] + 0.2 + 0.001 * torch.randn(200, 5, generator=g)
    assert choose(curves) == 4


def test_rejects_a_task_without_a_window():
    with pytest.raises(ValueError, match="task"):
        width_curve([], "cp", [1])


def test_refuses_a_shard_set_that_is_not_a_training_set(tmp_path):
    index = {"format": FORMAT, "complete": True, "config": {"split": "test"}, "shards": []}
    (tmp_path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="split 'train'"):
        training_batches(str(tmp_path), "ce", 16)
    assert main(["--shards", str(tmp_path)]) == 2                       # the CLI: one line on stderr, exit 2
    assert main(["--shards", str(tmp_path / "missing")]) == 2
