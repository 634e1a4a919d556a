"""AdamW's parameter groups: weight decay on matrices, none on biases and gains, and on the latent probe's matrices
only with ``optim.probe_decay``."""
import dataclasses

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.train.engine import PROBE_PREFIXES, param_groups


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
