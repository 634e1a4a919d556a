"""``model.nominal`` (icwm/model/common.NominalEmbed, ICWM.probe): the stated nominal value of a hidden scalar latent
(``prior_<name>``, what the blind baseline designs at) is read by pre_* (SNR) and bf / de / pe (offsets) only, the
probe then reads the latent as an offset from it, the truth (``latent_*``) is never read, and without the option
nothing changes (test_latent_form.py::test_theta_fields_are_never_read)."""
from __future__ import annotations

import pytest
import torch

from icwm import tasks
from icwm.model import LATENT_HAT, ModelConfig, build_model
from icwm.tasks.common import LATENT_PREFIX, PRIOR_PREFIX
from model_batches import latent_batch, random_batch

READERS = {"pre_sr": ("snr_db",), "pre_mm": ("snr_db",), "bf": ("panel_offset_deg",), "de": ("power_offset_db",),
           "pe": ("power_offset_db",)}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.flavour("debug", nominal=True, precoding_refine=False)).eval()


def _run(model: torch.nn.Module, batch: dict) -> dict:
    with torch.no_grad():
        return model(batch)


def _shift(batch: dict, prefix: str, by: float) -> dict:
    return {**batch, **{k: v + by for k, v in batch.items() if k.startswith(prefix)}}


def test_the_readers_are_the_precoding_and_sub6_tasks(model):
    assert model.nominal == READERS
    assert build_model(ModelConfig.flavour("debug")).nominal == {}


@pytest.mark.parametrize("task", tasks.TASKS)
def test_the_probe_reads_an_offset_from_the_nominal_and_the_truth_is_never_read(model, task: str):
    """Untrained, the nominal's embedding is zero: moving the stated nominal by 7 moves the reader tasks' estimates by
    exactly 7 (pre_*: also the SNR the read-out is rendered at; bf: its beams follow, the prior is rotated by the
    estimate; pe: its path loss) and nothing else; the other tasks ignore it."""
    b = latent_batch(task, k=3)
    ref = _run(model, b)
    assert all(torch.equal(ref[k], v) for k, v in _run(model, _shift(b, LATENT_PREFIX, 11.0)).items())
    moved = _run(model, _shift(b, PRIOR_PREFIX, 7.0))
    follows = {LATENT_HAT + n for n in READERS.get(task, ())} | ({"snr_db"} if task.startswith("pre_") else set())
    for key in follows:
        torch.testing.assert_close(moved[key], ref[key] + 7.0)
    if task == "bf":
        assert not torch.equal(moved["beam_logits"], ref["beam_logits"])
        follows |= {"beam_logits", "beam"}
    if task == "pe":                  # the path loss follows the offset estimate (the ICR refits the residuals)
        assert not torch.equal(moved["pathloss_db"], ref["pathloss_db"])
        follows |= {"pathloss_db"}
    assert all(torch.equal(moved[k], v) for k, v in ref.items() if k not in follows)


@pytest.mark.parametrize("task", sorted(READERS))
def test_the_nominal_embedding_reaches_the_tokens(task: str):
    """Once trained (here: random weights), the nominal changes the task's own prediction, not only the estimate;
    the given form (no nominal stated) is the nominal-free model's input (pe: with its probe at the given form's
    offset, 0)."""
    torch.manual_seed(1)
    model = build_model(ModelConfig.flavour("debug", nominal=True, precoding_refine=False)).eval()
    emb = model.embedders[task].nominal.lin
    with torch.no_grad():
        emb.weight.normal_()
    b = latent_batch(task, k=3)
    label = tasks.spec(task).y_keys[0] if task != "bf" else "beam_logits"
    assert not torch.allclose(_run(model, b)[label], _run(model, _shift(b, PRIOR_PREFIX, 7.0))[label])
    given = random_batch(task, k=3)
    with torch.no_grad():
        emb.bias.zero_()
        model.probes[task].weight.zero_()      # pe adds the offset estimate (0 in the given form, once trained)
    plain = build_model(ModelConfig.flavour("debug", precoding_refine=False)).eval()
    state = {k: v for k, v in model.state_dict().items() if ".nominal." not in k}
    plain.load_state_dict(state)
    out, ref = _run(model, given), _run(plain, given)
    assert all(torch.equal(out[k], ref[k]) for k in ref)


def test_pe_adds_the_offset_estimate_to_its_read_out(model):
    """A cell stated 6 dB louder: at k = 0 (no in-context fit) pe's path loss is 6 dB higher for the same channels."""
    b = latent_batch("pe", k=0)
    ref, moved = _run(model, b), _run(model, _shift(b, PRIOR_PREFIX, 6.0))
    torch.testing.assert_close(moved["pathloss_db"], ref["pathloss_db"] + 6.0)
    plain = build_model(ModelConfig.flavour("debug")).eval()
    assert torch.equal(_run(plain, b)["pathloss_db"], _run(plain, _shift(b, PRIOR_PREFIX, 6.0))["pathloss_db"])
