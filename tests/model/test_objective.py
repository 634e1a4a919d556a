"""icwm.train.objective: the task loss over all k + 1 pairs (flattening order, mean, gradients), the latent probe's
loss and its targets, and a few Adam steps on a latent-form batch that lower the loss."""
from __future__ import annotations

import types

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.tasks import TASKS
from icwm.train import objective
from icwm.model import LATENT_HAT, probe_latents
from model_batches import latent_batch, random_batch, wake_bf_head


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
    assert model.embedders["pre_sr"].gram.phi[0].weight.grad.abs().sum() > 0


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


def test_latent_losses_closed_form():
    """Zero when the probe states the truth; ((hat - truth) / scale)^2 summed over the probed latents otherwise."""
    b = latent_batch("bf", k=3)
    truth = b["latent_panel_offset_deg"]
    pred = {"beam": b["beam"], LATENT_HAT + "panel_offset_deg": truth.clone()}
    assert torch.equal(objective.latent_losses(pred, b), torch.zeros(2, 4))
    pred[LATENT_HAT + "panel_offset_deg"] = truth + torch.arange(4.0)
    torch.testing.assert_close(objective.latent_losses(pred, b), (torch.arange(4.0) / 20.0).pow(2).expand(2, 4))
    assert torch.equal(objective.latent_losses({"beam": b["beam"]}, b), torch.zeros(2, 4))   # no probe: no loss


def test_unapplied_weight_scales_only_the_offsets_a_form_does_not_apply():
    """``latent_unapplied``: the given form's bf offset (target 0) is charged that many times; the latent form's
    offset and the given form's stated SNR keep weight 1."""
    given, latent = random_batch("bf", k=3), latent_batch("bf", k=3)
    for b, scaled in ((given, True), (latent, False)):
        hat = objective.latent_target(b, "panel_offset_deg") + torch.arange(4.0)
        pred = {"beam": b["beam"], LATENT_HAT + "panel_offset_deg": hat}
        base = objective.latent_losses(pred, b)
        torch.testing.assert_close(objective.latent_losses(pred, b, unapplied=16.0), base * (16.0 if scaled else 1.0))
    snr = random_batch("pre_sr", k=2)
    pred = {LATENT_HAT + "snr_db": snr["snr_db"] + 3.0}
    torch.testing.assert_close(objective.latent_losses(pred, snr, unapplied=16.0), objective.latent_losses(pred, snr))


def test_latent_target_falls_back_to_the_input_then_zero():
    given, latent = random_batch("pre_sr", k=2), latent_batch("pre_sr", k=2)
    assert torch.equal(objective.latent_target(latent, "snr_db"), latent["latent_snr_db"])
    assert torch.equal(objective.latent_target(given, "snr_db"), given["snr_db"])
    for task in ("bf", "de", "pe"):                     # the given form applies no offset
        name = probe_latents(task)[0]
        assert torch.equal(objective.latent_target(random_batch(task, k=2), name), torch.zeros(2, 3))
        lb = latent_batch(task, k=2)
        assert torch.equal(objective.latent_target(lb, name), lb["latent_" + name])


@pytest.mark.parametrize("task", ["pre_sr", "bf"])
def test_latent_losses_without_given_leave_out_stated_latents_only(task: str):
    """``given=False``: the given form's SNR (an input) carries no probe loss, its latent form keeps it; bf's panel
    offset, never an input, keeps its loss (target 0) in both forms."""
    for b in (random_batch(task, k=2), latent_batch(task, k=2)):
        name = probe_latents(task)[0]
        pred = {LATENT_HAT + name: objective.latent_target(b, name) + 3.0}
        full, kept = objective.latent_losses(pred, b), objective.latent_losses(pred, b, given=False)
        assert float(full.min()) > 0
        stated = name in b
        assert stated == (task == "pre_sr" and "latent_" + name not in b)
        assert torch.equal(kept, torch.zeros_like(full) if stated else full)


def test_task_losses_passes_latent_given_on():
    """On a given-form pre_sr batch the probe's loss is the only difference ``latent_given=False`` makes."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug")).eval()
    b = _with_metadata(random_batch("pre_sr", k=3))
    with torch.no_grad():
        plain = objective.task_losses(model, b)
        full = objective.task_losses(model, b, latent_weight=0.5)
        kept = objective.task_losses(model, b, latent_weight=0.5, latent_given=False)
    assert float(full - plain) > 0
    torch.testing.assert_close(kept, plain)


@pytest.mark.parametrize("task", ["pre_sr", "det", "de"])
def test_task_losses_adds_the_weighted_latent_loss(task: str):
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug")).eval()
    b = _with_metadata(latent_batch(task, k=3))
    with torch.no_grad():
        plain = objective.task_losses(model, b)
        weighted = objective.task_losses(model, b, latent_weight=0.5)
        pred = model(b)
        ref = (objective.pair_losses(pred, b) + 0.5 * objective.latent_losses(pred, b)).mean()
    assert float(weighted - plain) > 0
    torch.testing.assert_close(weighted, ref)


def test_a_few_adam_steps_lower_the_loss_of_a_latent_batch():
    """de (a positive loss): task + latent probe loss on a fixed latent-form batch, 60 Adam steps."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug")).train()
    b = latent_batch("de", B=4, k=3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = objective.task_losses(model, b, latent_weight=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[0] > 0
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("grad", [False, True])
def test_precoding_task_loss_trains_the_probe_only_when_asked(grad: bool):
    """``precoding_snr_grad``: in the latent form the sum-rate loss reaches the SNR probe through the render of the
    read-out at the probe's SNR only when true (false: the probe learns the SNR from its own loss alone)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug", precoding_snr_grad=grad)).train()
    b = _with_metadata(latent_batch("pre_sr", k=3))
    objective.pair_losses(model(b), b).mean().backward()
    weight = model.probes["pre_sr"].weight.grad
    assert (weight is not None and weight.abs().sum() > 0) == grad
    assert model.embedders["pre_sr"].gram.phi[0].weight.grad.abs().sum() > 0       # the read-out trains either way
