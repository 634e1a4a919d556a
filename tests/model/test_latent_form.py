"""The latent form through the model (icwm/model/icwm.py, common.scalar_feature): samples without the inputs of
``SPEC.latent_x`` run, the theta fields (``latent_*``, ``prior_*``) are never read, a missing input has its own
embedding, the probe reports ``latent_hat_<name>`` for the task's scalar latents (block-causally), and precoding in the
latent form returns the probe's SNR."""
from __future__ import annotations

import copy

import pytest
import torch

from icwm import tasks
from icwm.model import LATENT_HAT, LATENT_SCALES, ModelConfig, build_model, probe_latents
from icwm.tasks.common import LATENT_PREFIX, PRIOR_PREFIX
from model_batches import KEYS, latent_batch, random_batch, wake_bf_head


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return wake_bf_head(build_model(ModelConfig.flavour("debug"))).eval()


def _run(model: torch.nn.Module, batch: dict) -> dict:
    with torch.no_grad():
        return model(batch)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _differ(a: dict, b: dict, keys) -> float:
    return max(float((a[k].double() if not a[k].is_complex() else a[k]).sub(b[k]).abs().max()) for k in keys)


def test_probe_latents_are_the_scalar_theta_names():
    for t in tasks.TASKS:
        spec = tasks.spec(t)
        assert probe_latents(t) == tuple(n for n in spec.latent if n in LATENT_SCALES)
        assert probe_latents(t), t                                      # every task has a probed latent
    assert probe_latents("det") == ("snr_db",) and probe_latents("bf") == ("panel_offset_deg",)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_latent_batch_runs_and_reports_its_latents(model, task: str):
    b = latent_batch(task, k=3)
    assert not set(tasks.spec(task).latent_x) & set(b)
    out = _run(model, b)
    for key in KEYS[task][1]:
        assert out[key].shape == b[key].shape
        v = out[key]
        assert torch.isfinite(v.abs() if v.is_complex() else v.float()).all()
    hats = {k for k in out if k.startswith(LATENT_HAT)}
    assert hats == {LATENT_HAT + n for n in probe_latents(task)}
    for k in hats:
        assert out[k].shape == (2, 4) and out[k].dtype == torch.float32 and torch.isfinite(out[k]).all()
    assert hats <= set(_run(model, random_batch(task, k=3)))              # the given form reports them too


@pytest.mark.parametrize("task", tasks.TASKS)
def test_theta_fields_are_never_read(model, task: str):
    b = latent_batch(task, k=3)
    ref = _run(model, b)
    theta = [k for k in b if k.startswith((LATENT_PREFIX, PRIOR_PREFIX))]
    assert theta
    other = {**b, **{k: b[k] * 3.0 + (1.0 + 1.0j if b[k].is_complex() else 7.0) for k in theta}}
    assert _same(_run(model, other), ref)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_missing_inputs_have_their_own_embedding(model, task: str):
    """The latent form differs from the given form of the same batch, also when the given SNR is 0 dB (the same
    value feature as a missing one: only the missing flag tells them apart). Without omitted inputs (bf, de, pe)
    the two forms are the same input and give the same outputs."""
    given = random_batch(task, k=3)
    latent = latent_batch(task, k=3)
    out_g, out_l = _run(model, given), _run(model, latent)
    keys = KEYS[task][1]
    if not tasks.spec(task).latent_x:
        assert all(torch.equal(out_g[k], out_l[k]) for k in keys)
        return
    assert _differ(out_g, out_l, keys) > 1e-5
    if task != "det":                                                   # det also loses h in the latent form
        zero = _run(model, {**given, "snr_db": torch.zeros_like(given["snr_db"])})
        assert _differ(zero, out_l, keys) > 1e-5


@pytest.mark.parametrize("task", ["pre_sr", "pre_mm"])
def test_precoding_designs_at_the_probes_snr_in_the_latent_form(model, task: str):
    out = _run(model, latent_batch(task, k=3))
    assert torch.equal(out["snr_db"], out[LATENT_HAT + "snr_db"])
    assert "snr_db" not in _run(model, random_batch(task, k=3))           # given form: the SNR is an input


@pytest.mark.parametrize("task", tasks.TASKS)
def test_probe_is_block_causal(model, task: str):
    """Pair i's latent estimate reads the pairs before it and its own inputs, never its own or later labels."""
    b, i = latent_batch(task, k=3), 1
    model = copy.deepcopy(model)
    with torch.no_grad():                   # the probes start at zero (no offset): give them weights to test
        for probe in model.probes.values():
            probe.weight.normal_(generator=torch.Generator().manual_seed(0))
    ref = _run(model, b)
    later = dict(b)
    for key in KEYS[task][1]:
        v = b[key].clone()
        v[:, i:] = (v[:, i:] + 1) % 7 if v.dtype == torch.int64 else 1.5 * v[:, i:] + 0.5
        later[key] = v
    out = _run(model, later)
    for n in probe_latents(task):
        hat = LATENT_HAT + n
        assert torch.equal(out[hat][:, : i + 1], ref[hat][:, : i + 1])
        assert (out[hat][:, i + 1:] - ref[hat][:, i + 1:]).abs().max() > 1e-7
