"""icwm.train.objective: the task loss over all k + 1 pairs (flattening order, mean, gradients)."""
from __future__ import annotations

import types

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.tasks import TASKS
from icwm.train import objective
from model_batches import random_batch, wake_bf_head


def _fake_task(monkeypatch) -> None:
    """A stand-in task whose loss is the per-sample squared error of lam_p, [N]."""
    mod = types.SimpleNamespace(Y_KEYS=("lam_p",), loss=lambda pred, s: (pred["lam_p"] - s["lam_p"]).pow(2).sum((-2, -1)))
    monkeypatch.setattr(objective.tasks, "get", lambda task: mod)


def test_flattening_keeps_pair_order_and_mean(monkeypatch):
    _fake_task(monkeypatch)
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug"))
    b = random_batch("pre_sr", B=3, k=4)
    b["meta"] = torch.arange(15.0).reshape(3, 5)  # metadata [B, k+1] is flattened too
    pred = model(b)
    per_pair = objective.pair_losses(pred, b)
    expect = (pred["lam_p"] - b["lam_p"]).pow(2).sum((-2, -1))
    assert per_pair.shape == (3, 5) and torch.allclose(per_pair, expect)
    flat = objective.flatten_pairs(b, 3, 5)
    assert flat["meta"].tolist() == list(range(15)) and flat["task"] == "pre_sr"
    loss = objective.task_losses(model, b)
    assert torch.allclose(loss, expect.mean())
    loss.backward()
    assert model.embedders["pre_sr"].self_lin.weight.grad.abs().sum() > 0


def _with_metadata(b: dict) -> dict:
    """Add the metadata keys some real task losses read."""
    shape = b[next(k for k in b if torch.is_tensor(b[k]))].shape[:2]
    return {**b, "rate_wmmse": torch.full(shape, 5.0), "sinr_opt_db": torch.full(shape, 10.0)}


@pytest.mark.parametrize("task", TASKS)
def test_real_task_losses_are_finite_and_differentiable(task: str):
    torch.manual_seed(0)
    model = wake_bf_head(build_model(ModelConfig.flavour("debug")))
    loss = objective.task_losses(model, _with_metadata(random_batch(task, B=2, k=2)))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.trunk.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
