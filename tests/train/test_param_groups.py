"""AdamW's parameter groups: weight decay on matrices, none on biases and gains, and on the latent probe's matrices
only with ``optim.probe_decay``."""
import dataclasses

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.train.config import OptimConfig, PretrainConfig
from icwm.train.engine import PROBE_PREFIXES, build_optimizer, param_groups


@pytest.mark.parametrize("probe_decay", [True, False])
def test_probe_matrices_are_decayed_only_when_asked(probe_decay: bool):
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=True, probe_fit="branch", probe_hidden=8)
    model = build_model(cfg)
    decay, rest = param_groups(model, 0.1, probe_decay)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    ids = {id(p) for p in decay["params"]}
    named = dict(model.named_parameters())
    probe = [n for n, p in named.items() if n.startswith(PROBE_PREFIXES) and p.dim() >= 2]
    assert any(n.startswith("fit_probes.") for n in probe) and any(n.startswith("probes.") for n in probe)
    assert all((id(named[n]) in ids) == probe_decay for n in probe)
    others = [n for n, p in named.items() if not n.startswith(PROBE_PREFIXES)]
    assert all((id(named[n]) in ids) == (named[n].dim() >= 2) for n in others)
    assert len(decay["params"]) + len(rest["params"]) == len(named)


def test_without_probe_decay_adamw_leaves_an_idle_probe_matrix_alone():
    """Zero gradient: with probe_decay off AdamW does not shrink the probe's weights; a trunk matrix still shrinks."""
    model = build_model(ModelConfig.flavour("debug"))
    opt = torch.optim.AdamW(param_groups(model, 0.5, probe_decay=False), lr=0.1)
    probe, trunk = model.probes["pre_sr"].weight, next(p for p in model.trunk.parameters() if p.dim() >= 2)
    before = probe.detach().clone(), trunk.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(probe, before[0]) and trunk.abs().sum() < before[1].abs().sum()


def test_icr_scalars_get_their_own_learning_rate():
    """optim.icr_lr_mult: the in-context ridges' scalars (every task's) in a third group at lr x mult, which the
    warm-up + cosine schedule scales like the others; at 1 the two usual groups hold every parameter."""
    model = build_model(ModelConfig.flavour("debug"))
    named = dict(model.named_parameters())
    icr = {n for n in named if ".icr." in n}
    assert {n.split(".")[1] for n in icr} >= {"det", "ce", "cp", "pf", "de", "pe"}
    assert len(param_groups(model, 0.1)) == 2
    cfg = PretrainConfig()
    cfg.optim.lr, cfg.optim.icr_lr_mult = 1e-3, 10.0
    opt, sched = build_optimizer(model, cfg)
    decay, rest, fast = opt.param_groups
    assert {id(p) for p in fast["params"]} == {id(named[n]) for n in icr} and fast["weight_decay"] == 0.0
    assert not ({id(p) for p in decay["params"] + rest["params"]} & {id(p) for p in fast["params"]})
    for _ in range(3):
        opt.step()
        sched.step()
        assert fast["lr"] == pytest.approx(10.0 * rest["lr"]) and rest["lr"] > 0


@pytest.mark.parametrize("mult", [0.0, -1.0])
def test_icr_lr_mult_must_be_positive(mult: float):
    with pytest.raises(ValueError, match="optim.icr_lr_mult"):
        OptimConfig(icr_lr_mult=mult)
