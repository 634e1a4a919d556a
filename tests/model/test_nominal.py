"""``model.nominal`` (icwm/model/common.NominalEmbed, ICWM.probe): the stated nominal value of a hidden scalar latent
(``prior_<name>``, what the blind baseline designs at) is read by pre_* (SNR) and bf / de / pe (offsets) only, the
probe then reads the latent as an offset from it, the truth (``latent_*``) is never read, and without the option
nothing changes (test_latent_form.py::test_theta_fields_are_never_read)."""
from __future__ import annotations

import pytest
import torch

from icwm import tasks
from icwm.model import LATENT_HAT, ModelConfig, build_model
from icwm.model.cache import answer_queries, encode_demos
from icwm.tasks.common import LATENT_PREFIX, PRIOR_PREFIX
from model_batches import latent_batch, random_batch, split_for_cache, wake_bf_head

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


@pytest.mark.parametrize("task", ["de", "pe"])
def test_in_the_nominal_frame_a_louder_cell_told_its_offset_looks_like_a_quiet_one(task: str):
    """``nominal_frame``: a cell transmitting Delta dB more (h_sub6 scaled by 10^(Delta / 20)) and stated Delta dB
    louder gives the same distance / path loss at every k (trained weights: random), the offset estimate moves by
    exactly Delta; without the frame the same change moves the prediction (the tokens see the louder cell)."""
    b = latent_batch(task, k=4)
    louder = {**_shift(b, PRIOR_PREFIX, 9.0), "h_sub6": b["h_sub6"] * 10.0 ** (9.0 / 20.0)}
    key = tasks.spec(task).y_keys[0]
    for frame in (True, False):
        torch.manual_seed(2)
        model = build_model(ModelConfig.flavour("debug", nominal=True, nominal_frame=frame)).eval()
        with torch.no_grad():
            model.embedders[task].nominal.lin.weight.normal_()
        ref, out = _run(model, b), _run(model, louder)
        if frame:
            torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-3)
            torch.testing.assert_close(out[LATENT_HAT + "power_offset_db"], ref[LATENT_HAT + "power_offset_db"] + 9.0)
        else:
            assert (out[key] - ref[key]).abs().max() > 1e-2


def test_in_the_nominal_frame_bf_reads_its_beams_rotated_by_the_nominal():
    """``nominal_frame``: bf's label tokens read each beam's azimuth rotated by the stated offset; the nominal's value
    itself is not embedded (only that one is stated); at a stated 0 the frame is the plain model's."""
    torch.manual_seed(3)
    model = wake_bf_head(build_model(ModelConfig.flavour("debug", nominal=True, nominal_frame=True))).eval()
    b = latent_batch("bf", k=3)
    emb = model.embedders["bf"]
    with torch.no_grad():
        emb.nominal.lin.weight.normal_()
    rotated = _shift(b, PRIOR_PREFIX, 10.0)
    token = emb.bf_label_token(torch.tensor([[5]]), b["h_sub6"][:1, :1], torch.tensor([[10.0]]))
    assert not torch.allclose(token, emb.bf_label_token(torch.tensor([[5]]), b["h_sub6"][:1, :1], torch.zeros(1, 1)))
    assert torch.equal(emb.nominal(b, b["h_sub6"]), emb.nominal(rotated, b["h_sub6"]))   # [B, P, 1, d]
    ref, out = _run(model, b), _run(model, rotated)
    assert not torch.allclose(out["beam_logits"][:, 1:], ref["beam_logits"][:, 1:])
    zero = _shift(b, PRIOR_PREFIX, -3.0)                 # latent_batch states 3: now 0
    plain = build_model(ModelConfig.flavour("debug", nominal=True))
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        plain.embedders["bf"].nominal.lin.weight[:, 0::2].zero_()   # the value column: unused in the frame
        model.embedders["bf"].nominal.lin.weight[:, 0::2].zero_()
    torch.testing.assert_close(_run(plain.eval(), zero)["beam_logits"], _run(model, zero)["beam_logits"])


def test_nominal_frame_needs_nominal():
    with pytest.raises(ValueError, match="nominal_frame"):
        ModelConfig.flavour("debug", nominal_frame=True)


def _cached_agrees(model: torch.nn.Module, batch: dict) -> tuple[dict, dict]:
    """The cached path's answers for ``batch``'s queries after episode 0's demonstrations (``split_for_cache``),
    checked equal to the full forward pass's last pair; returns (those answers, the full episodes)."""
    demos, queries, full = split_for_cache(batch)
    ref = {key: v[:, -1] for key, v in _run(model, full).items()}
    with torch.no_grad():
        out = answer_queries(model, encode_demos(model, demos), queries)
    for key, v in ref.items():
        torch.testing.assert_close(out[key], v, rtol=1e-5, atol=1e-5)
    return out, full


@pytest.mark.parametrize("task", sorted(READERS))
def test_probe_k0_nominal_states_the_nominal_at_pair_0_only_at_inference(task: str):
    """``model.probe_k0_nominal``: in eval mode the named task's pair 0 (no earlier pairs) estimates each hidden
    latent at its stated nominal (pre_*: the SNR the read-out is rendered at too), every later pair as without the
    option, the other tasks untouched; training mode unchanged; without ``nominal`` or for a task with no scalar
    latent it is refused."""
    torch.manual_seed(0)
    k0 = build_model(ModelConfig.flavour("debug", nominal=True, precoding_refine=False, dropout=0.0,
                                         probe_k0_nominal=(task,))).eval()
    plain = build_model(ModelConfig.flavour("debug", nominal=True, precoding_refine=False, dropout=0.0)).eval()
    plain.load_state_dict(k0.state_dict())
    for t in READERS:
        b = latent_batch(t, k=3)
        out, ref = _run(k0, b), _run(plain, b)
        for n in READERS[t]:
            hat = LATENT_HAT + n
            torch.testing.assert_close(out[hat][:, 1:], ref[hat][:, 1:])
            assert torch.equal(out[hat][:, 0], b[PRIOR_PREFIX + n][:, 0]) == (t == task)
            assert torch.equal(out[hat][:, 0], ref[hat][:, 0]) == (t != task)
        if t.startswith("pre_"):
            assert torch.equal(out["snr_db"], out[LATENT_HAT + "snr_db"])
    for k in (0, 3):                  # the cached path: only a query with no demonstrations states the nominal
        out, full = _cached_agrees(k0, latent_batch(task, k=k, B=2))
        hat = LATENT_HAT + READERS[task][0]
        assert torch.equal(out[hat], full[PRIOR_PREFIX + READERS[task][0]][:, -1]) == (k == 0)
    k0.train(), plain.train()
    b = latent_batch(task, k=3)
    torch.testing.assert_close(k0(b)[LATENT_HAT + READERS[task][0]], plain(b)[LATENT_HAT + READERS[task][0]])
    with pytest.raises(ValueError, match="probe_k0_nominal"):
        build_model(ModelConfig.flavour("debug", probe_k0_nominal=(task,)))
    with pytest.raises(ValueError, match="probe_k0_nominal"):
        build_model(ModelConfig.flavour("debug", nominal=True, probe_k0_nominal=("ce",)))


UNAPPLIED = ("bf", "de", "pe")        # probed offsets that no form states as an input


@pytest.mark.parametrize("task", UNAPPLIED)
def test_probe_k0_unapplied_zero_reads_0_at_pair_0_of_the_given_form_only_at_inference(task: str):
    """``model.probe_k0_unapplied_zero``: in eval mode the named task's pair 0 (no earlier pairs) of a given-form
    batch (no stated nominal; the form applies no offset) estimates its offset at 0, later pairs' estimates as
    without the option; pe's path loss at pair 0 is then its read-out alone; a latent-form batch (nominal stated),
    the other tasks and training mode are untouched; the cached path agrees; a task whose latent a form states as
    an input (pre_*'s SNR) is refused."""
    torch.manual_seed(0)
    cfg = dict(nominal=True, precoding_refine=False, dropout=0.0)
    zero = build_model(ModelConfig.flavour("debug", **cfg, probe_k0_unapplied_zero=(task,))).eval()
    plain = build_model(ModelConfig.flavour("debug", **cfg)).eval()
    plain.load_state_dict(zero.state_dict())
    for t in UNAPPLIED:
        hat = LATENT_HAT + READERS[t][0]
        b = random_batch(t, k=3)
        out, ref = _run(zero, b), _run(plain, b)
        assert not torch.equal(ref[hat][:, 0], torch.zeros_like(ref[hat][:, 0]))
        assert torch.equal(out[hat][:, 0], torch.zeros_like(out[hat][:, 0])) == (t == task)
        torch.testing.assert_close(out[hat][:, 1:], ref[hat][:, 1:])
        if t == task == "pe":         # the read-out alone: the offset it adds is the estimate less the nominal (0)
            moved = out["pathloss_db"][:, 0] - ref["pathloss_db"][:, 0]
            torch.testing.assert_close(moved, -ref[hat][:, 0])
        lat = latent_batch(t, k=3)
        assert all(torch.equal(v, _run(plain, lat)[key]) for key, v in _run(zero, lat).items())
    for k in (0, 3):                  # the cached path: only a query with no demonstrations reads 0
        out, _ = _cached_agrees(zero, random_batch(task, k=k, B=2))
        hat = LATENT_HAT + READERS[task][0]
        assert torch.equal(out[hat], torch.zeros_like(out[hat])) == (k == 0)
    zero.train(), plain.train()
    b = random_batch(task, k=3)
    torch.testing.assert_close(zero(b)[LATENT_HAT + READERS[task][0]], plain(b)[LATENT_HAT + READERS[task][0]])
    with pytest.raises(ValueError, match="probe_k0_unapplied_zero"):
        build_model(ModelConfig.flavour("debug", nominal=True, probe_k0_unapplied_zero=("pre_sr",)))
    with pytest.raises(ValueError, match="probe_k0_unapplied_zero"):    # without nominal no batch states one
        ModelConfig.flavour("debug", probe_k0_unapplied_zero=(task,))


def _jolt_probe(model: torch.nn.Module, task: str) -> torch.nn.Module:
    """A copy of ``model`` whose ``task`` probe reads differently (its parameters moved at random)."""
    other = build_model(model.cfg).eval()
    other.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in other.probes[task].parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return other


@pytest.mark.parametrize("task", ("bf", "pe"))
@pytest.mark.parametrize("stated_only", (False, True))
def test_offset_stated_only_applies_no_offset_where_no_nominal_is_stated(task: str, stated_only: bool):
    """``model.offset_stated_only``: in the given form (no stated nominal) the named head's prediction does not depend
    on the probe's offset read (bf: the angle map's beam scores, pe: the read-out and its in-context correction), in
    training and at inference; in the latent form it does, as without the option, which the given form follows too."""
    torch.manual_seed(0)
    model = wake_bf_head(build_model(ModelConfig.flavour("debug", nominal=True, dropout=0.0, precoding_refine=False,
                                                         offset_stated_only=(task,) if stated_only else ())))
    other = _jolt_probe(model, task)
    key = "beam_logits" if task == "bf" else "pathloss_db"
    for mode in ("eval", "train"):
        model.train(mode == "train"), other.train(mode == "train")
        for b, given in ((random_batch(task, k=3), True), (latent_batch(task, k=3), False)):
            out, moved = _run(model, b), _run(other, b)
            assert not torch.equal(out[LATENT_HAT + READERS[task][0]], moved[LATENT_HAT + READERS[task][0]])
            assert torch.equal(out[key], moved[key]) == (given and stated_only)


def test_offset_stated_only_names_bf_or_pe_and_needs_nominal():
    with pytest.raises(ValueError, match="offset_stated_only"):
        ModelConfig.flavour("debug", nominal=True, offset_stated_only=("de",))
    with pytest.raises(ValueError, match="offset_stated_only"):
        ModelConfig.flavour("debug", offset_stated_only=("pe",))


@pytest.mark.parametrize("task", ("de", "pe"))
def test_icr_form_table_moves_the_given_forms_ridge_only(task: str):
    """``model.icr_form_table``: the in-context fit's second per-j log-ridge table (a trained parameter the ridges'
    learning-rate group holds, ``.icr.`` in its name, starting at 0: the plain model) moves the given form's
    predictions at pairs with earlier pairs and never the latent form's (nominal stated) nor pair 0."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug", nominal=True, dropout=0.0, icr_form_table=(task,))).eval()
    plain = build_model(ModelConfig.flavour("debug", nominal=True, dropout=0.0)).eval()
    names = [n for n, _ in model.named_parameters() if n.endswith("form_table")]
    assert names == [f"heads.{task}.icr.form_table"] and ".icr." in names[0]
    keys = plain.load_state_dict(model.state_dict(), strict=False)               # all but the option's table
    assert keys.missing_keys == [] and keys.unexpected_keys == names
    given, latent = random_batch(task, k=3), latent_batch(task, k=3)
    key = "distance_m" if task == "de" else "pathloss_db"
    assert torch.equal(_run(model, given)[key], _run(plain, given)[key])           # the table starts at 0
    with torch.no_grad():
        model.heads[task].icr.form_table.fill_(3.0)                              # a ridge e^3 times stronger
    moved, ref = _run(model, given)[key], _run(plain, given)[key]
    assert torch.equal(moved[:, 0], ref[:, 0]) and not torch.equal(moved[:, 1:], ref[:, 1:])
    assert torch.equal(_run(model, latent)[key], _run(plain, latent)[key])
    with pytest.raises(ValueError, match="icr_form_table"):
        ModelConfig.flavour("debug", nominal=True, icr_form_table=("bf",))
    with pytest.raises(ValueError, match="icr_form_table"):
        ModelConfig.flavour("debug", nominal=True, icr=False, icr_form_table=(task,))
