"""DWA against the formula of Liu et al. (2019) computed by hand, plus the rank reduction and state round trip."""
import math

import pytest
import torch

from icwm.train.dwa import DWA, descent_ratio


def _feed(dwa: DWA, per_window: list[dict[str, list[float]]]) -> list[dict[str, float]]:
    """Feed one list of losses per task per window; returns the weights in force during each window."""
    seen = []
    for window in per_window:
        seen.append(dwa.weights)
        n = max(len(v) for v in window.values())
        for s in range(n):
            for task, vals in window.items():
                if s < len(vals):
                    dwa.observe(task, vals[s])
            dwa.step()
    seen.append(dwa.weights)
    return seen


def test_uniform_first_two_windows_then_formula():
    dwa = DWA(["a", "b", "c"], T=2.0, window=2)
    w = _feed(dwa, [{"a": [4.0, 2.0], "b": [1.0, 1.0], "c": [0.5, 0.7]},
                    {"a": [1.0, 2.0], "b": [2.0, 2.0], "c": [0.2, 0.2]},
                    {"a": [0.5, 0.5], "b": [1.0, 3.0], "c": [0.6, 0.6]}])
    assert w[0] == w[1] == {"a": 1.0, "b": 1.0, "c": 1.0}
    means1, means2, means3 = [3.0, 1.0, 0.6], [1.5, 2.0, 0.2], [0.5, 2.0, 0.6]
    for seen, (now, before) in ((w[2], (means2, means1)), (w[3], (means3, means2))):
        e = [math.exp(n / b / 2.0) for n, b in zip(now, before)]
        expect = [3 * x / sum(e) for x in e]
        assert [seen[t] for t in "abc"] == pytest.approx(expect, rel=1e-12)
        assert sum(seen.values()) == pytest.approx(3.0)
    # b's loss rose in window 2 (ratio 2): it gets the largest weight; c fell to a third: the smallest
    assert w[2]["b"] > w[2]["a"] > w[2]["c"]


def test_window_means_are_averages_over_steps_and_ranks():
    calls = []

    def fake_all_reduce(t: torch.Tensor) -> None:
        calls.append(t.clone())
        t.add_(torch.tensor([[10.0, 0.0], [2.0, 0.0]], dtype=torch.float64))  # another rank: a saw 4 and 6; b nothing

    dwa = DWA(["a", "b"], T=2.0, window=1, all_reduce=fake_all_reduce)
    dwa.observe("a", torch.tensor(1.0))
    dwa.observe("a", 3.0)
    dwa.observe("b", 2.0)
    dwa.step()
    assert calls[0].tolist() == [[4.0, 2.0], [2.0, 1.0]]
    assert dwa.means[-1] == pytest.approx([14.0 / 4.0, 2.0])


def test_negative_losses_and_missing_tasks():
    assert descent_ratio(-0.9, -0.8) == pytest.approx(0.8 / 0.9)   # more negative = improving = ratio < 1
    assert descent_ratio(0.5, 1.0) == 0.5
    assert descent_ratio(1.0, -1.0) == 1.0 and descent_ratio(float("nan"), 1.0) == 1.0
    dwa = DWA(["a", "b"], window=1)
    _feed(dwa, [{"a": [1.0], "b": [1.0]}, {"a": [2.0]}])  # b unseen in window 2 keeps its mean: ratio 1
    e = [math.exp(2.0 / 2.0), math.exp(1.0 / 2.0)]
    assert [dwa.weights["a"], dwa.weights["b"]] == pytest.approx([2 * x / sum(e) for x in e])


def test_state_round_trip_and_validation():
    dwa = DWA(["a", "b"], window=2)
    _feed(dwa, [{"a": [1.0, 2.0], "b": [3.0, 1.0]}, {"a": [1.0, 1.0], "b": [1.0, 1.0]}])
    dwa.observe("a", 5.0)
    other = DWA(["a", "b"], window=7)
    other.load_state_dict(dwa.state_dict())
    assert other.state_dict() == dwa.state_dict()
    with pytest.raises(ValueError, match="dwa.tasks"):
        DWA(["a", "c"]).load_state_dict(dwa.state_dict())
    with pytest.raises(ValueError, match="task"):
        dwa.observe("zz", 1.0)
    with pytest.raises(ValueError, match="dwa.T"):
        DWA(["a"], T=0.0)
