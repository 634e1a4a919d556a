"""bf / de / pe (icwm/model/sub6.py). bf: the prior is the sub-6 angle spectrum read at the mmWave beams with the
panel rotated by the latent probe's offset (``beams.rotated_beam_scores``); the untrained head is that angle map and
any confidence keeps its argmax. de / pe: read-out + the in-context ridge fit on [1, power, learned features]
against the closed form, recovery of a cell's law, block causality, absent at k = 0."""
from __future__ import annotations

import math

import pytest
import torch

from icwm.model import LATENT_SCALES, ModelConfig, build_model
from icwm.model.sub6 import Y, Sub6Ctx, Sub6Head, from_z, to_z
from icwm.train.objective import latent_losses
from icwm.wireless import beams
from model_batches import random_batch, wake_bf_head


# ---- the rotated prior (icwm.wireless.beams) -------------------------------------------------------------------------
def test_rotated_beam_scores_at_zero_offset_are_the_sub6_beam_scores():
    h = random_batch("bf", B=3, k=2, A=8, S6=16)["h_sub6"]
    got = beams.rotated_beam_scores(h, 256, torch.zeros(h.shape[:2]))
    ref = beams.sub6_beam_scores(h, 256)
    assert got.shape == ref.shape == (3, 3, 256) and torch.isfinite(ref).all()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [-25.0, 0.0, 10.0, 40.0])
def test_rotated_beam_scores_peak_at_the_rotated_path(offset: float, rng: torch.Generator):
    """One path at sub-6 azimuth alpha: the best beam is the one at alpha - offset in the mmWave frame
    (``rotated_angle_map``), within one beam (the sub-6 and beam grids differ)."""
    alpha = torch.deg2rad(torch.tensor([-50.0, -20.0, 5.0, 30.0, 55.0]))
    n = torch.arange(8)
    a = torch.exp(1j * math.pi * torch.sin(alpha)[:, None] * n)                        # [path, ant]
    gains = torch.exp(2j * math.pi * torch.rand(5, 16, 1, generator=rng))                            # per subcarrier
    h = (gains * a[:, None, :]).to(torch.complex64)                                    # [path, sc, ant]
    best = beams.rotated_beam_scores(h, 64, torch.full((5,), offset)).argmax(-1)
    ref = beams.rotated_angle_map(alpha, 64, offset)
    assert ((best - ref + 32) % 64 - 32).abs().max() <= 1, (best, ref)
    if offset != 0.0:
        assert not torch.equal(best, beams.rotated_angle_map(alpha, 64, 0.0))


# ---- bf head ---------------------------------------------------------------------------------------------------------
def _probe_at(model: torch.nn.Module, task: str, value: float, name: str) -> None:
    """Force the latent probe of ``task`` to output ``value`` (natural units) whatever the tokens."""
    with torch.no_grad():
        model.probes[task].weight.zero_()
        model.probes[task].bias.fill_(value / LATENT_SCALES[name])


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_untrained_bf_head_is_the_rotated_angle_map_at_the_probe_offset(offset: float):
    cfg = ModelConfig.flavour("debug")
    model = build_model(cfg).eval()
    _probe_at(model, "bf", offset, "panel_offset_deg")
    batch = random_batch("bf", k=3)
    with torch.no_grad():
        out = model(batch)
    torch.testing.assert_close(out["latent_hat_panel_offset_deg"], torch.full((2, 4), offset))
    scores = beams.rotated_beam_scores(batch["h_sub6"], cfg.n_beams, torch.full((2, 4), offset))
    torch.testing.assert_close(out["beam_logits"], scores.clamp_min(cfg.bf_prior_floor))   # confidence 1
    assert torch.equal(out["beam"], scores.argmax(-1))
    with torch.no_grad():
        awake = wake_bf_head(model)(batch)                                             # any confidence > 0
    assert not torch.allclose(awake["beam_logits"], out["beam_logits"])
    assert torch.equal(awake["beam"], scores.argmax(-1))


def test_fresh_probe_is_off_the_saddle():
    """At init the probe's loss trains both the probe and the trunk (all-zero probe weights would give the trunk no
    gradient to encode the offset and the probe nothing to read: v10's probe stayed near 0)."""
    model = build_model(ModelConfig.flavour("debug")).train()
    batch = {**random_batch("bf", k=3), "latent_panel_offset_deg": torch.full((2, 4), 15.0)}
    latent_losses(model(batch), batch).mean().backward()
    assert model.probes["bf"].weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters() if p.dim() > 1)


def test_bf_prior_follows_the_probe():
    """Two offsets far apart give different decisions on a one-path channel (the probe's offset is used)."""
    model = build_model(ModelConfig.flavour("debug")).eval()
    batch = random_batch("bf", B=1, k=1)
    alpha = torch.deg2rad(torch.tensor(20.0))
    a = torch.exp(1j * math.pi * torch.sin(alpha) * torch.arange(8)).to(torch.complex64)
    batch["h_sub6"] = a.expand(1, 2, 16, 8).clone()
    decided = []
    for off in (0.0, 30.0):
        _probe_at(model, "bf", off, "panel_offset_deg")
        with torch.no_grad():
            decided.append(model(batch)["beam"][0, 0])
    assert decided[0] != decided[1]
    assert int(decided[1]) == int(beams.rotated_beam_scores(batch["h_sub6"][0, :1], 256,
                                                            torch.tensor([30.0])).argmax(-1))


# ---- de / pe ---------------------------------------------------------------------------------------------------------
def _head(task: str, **kw) -> tuple[Sub6Head, ModelConfig]:
    torch.manual_seed(0)
    cfg = ModelConfig.flavour("debug", **kw)
    return Sub6Head(cfg, task), cfg


def _ctx(b: int, p: int, label: torch.Tensor, g: torch.Generator) -> Sub6Ctx:
    return Sub6Ctx(power=torch.randn(b, p, generator=g), label=label, h=torch.zeros(b, p, 1, 1, dtype=torch.complex64),
                   nominal=torch.zeros(b, p))


@pytest.mark.parametrize("task", ["de", "pe"])
def test_z_map_round_trip(task: str):
    v = torch.tensor([5.0, 80.0, 300.0]) if task == "de" else torch.tensor([60.0, 100.0, 140.0])
    torch.testing.assert_close(from_z(task, to_z(task, v)), v)
    assert to_z(task, torch.tensor([100.0])).item() == 0.0


@pytest.mark.parametrize("task", ["de", "pe"])
def test_de_pe_fit_matches_the_closed_form_ridge(task: str):
    """Pair q: z0_q + f_q^T (sum_j<q f_j f_j^T + lam_q I)^-1 sum_j<q f_j (z_j - z0_j), f = [1, power, tanh(W h)],
    lam_q = n0 exp(slope / max(q, 1)) mean(f_q^2)."""
    g = torch.Generator().manual_seed(1)
    head, cfg = _head(task)
    b, p = 2, 6
    hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
    z = torch.randn(b, p, generator=g)
    ctx = _ctx(b, p, z, g)
    with torch.no_grad():
        head.icr.slope.fill_(0.5)
        out = to_z(task, head(hx, ctx, {})[Y[task]]).double()
        h = hx.mean(-2)
        z0 = head.out(h)[..., 0].double()
        f = torch.cat((torch.ones(b, p, 1), ctx.power[..., None], torch.tanh(head.feat(h))), -1).double()
    assert f.shape[-1] == cfg.icr_features + 2
    ref = torch.zeros(b, p, dtype=torch.float64)
    for i in range(b):
        for q in range(p):
            lam = cfg.icr_n0 * math.exp(0.5 / max(q, 1)) * float(f[i, q].pow(2).mean())
            a = lam * torch.eye(f.shape[-1], dtype=torch.float64)
            c = torch.zeros(f.shape[-1], dtype=torch.float64)
            for j in range(q):
                a += torch.outer(f[i, j], f[i, j])
                c += f[i, j] * (z[i, j] - z0[i, j])
            ref[i, q] = z0[i, q] + f[i, q] @ torch.linalg.solve(a, c)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert (out - z0).abs()[:, 1:].min() > 1e-6                                       # the fit is active


def test_de_fit_learns_the_cell_law_from_demonstrations():
    """Labels from an exact law of the received power, unknown to the read-out (100 m everywhere): the earlier
    pairs pin it down."""
    g = torch.Generator().manual_seed(2)
    head, cfg = _head("de", icr_n0=1e-6)
    with torch.no_grad():
        head.out[-1].weight.zero_()
        head.out[-1].bias.zero_()
    b, p = 4, 16
    hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
    ctx = _ctx(b, p, torch.zeros(b, p), g)
    ctx.label = 0.7 - 1.3 * ctx.power                                                  # log(d / 100) = a + b power
    with torch.no_grad():
        dist = head(hx, ctx, {})["distance_m"]
    err = (to_z("de", dist) - ctx.label).abs()
    assert err[:, -1].max() < 1e-2 * err[:, 0].mean(), (err[:, 0].mean(), err[:, -1].max())


@pytest.mark.parametrize("task", ["de", "pe"])
def test_de_pe_fit_is_block_causal_and_absent_without_demos(task: str):
    g = torch.Generator().manual_seed(3)
    head, cfg = _head(task)
    b, p, q = 1, 5, 2
    hx = torch.randn(b, p, 3, cfg.d_model, generator=g)
    ctx = _ctx(b, p, torch.randn(b, p, generator=g), g)
    with torch.no_grad():
        out = head(hx, ctx, {})[Y[task]]
        label, power = ctx.label.clone(), ctx.power.clone()
        label[:, q:] += 1.0
        power[:, q + 1:] -= 2.0
        out2 = head(hx, Sub6Ctx(power=power, label=label, h=ctx.h, nominal=ctx.nominal), {})[Y[task]]
        single = head(hx[:, :1], Sub6Ctx(power=ctx.power[:, :1], label=ctx.label[:, :1], h=ctx.h[:, :1],
                                         nominal=ctx.nominal[:, :1]), {})[Y[task]]
        readout = from_z(task, head.out(hx[:, 0].mean(-2))[..., 0])
    torch.testing.assert_close(out2[:, : q + 1], out[:, : q + 1], rtol=0, atol=0)
    assert (out2[:, q + 1] - out[:, q + 1]).abs().max() > 1e-4
    torch.testing.assert_close(single[:, 0], readout)                                  # k = 0: the read-out
    torch.testing.assert_close(out[:, 0], readout)                                     # pair 0 likewise


def test_without_icr_de_is_the_read_out():
    head, cfg = _head("de", icr=False)
    assert head.icr is None
    g = torch.Generator().manual_seed(4)
    hx = torch.randn(2, 4, 3, cfg.d_model, generator=g)
    ctx = _ctx(2, 4, torch.randn(2, 4, generator=g), g)
    with torch.no_grad():
        torch.testing.assert_close(head(hx, ctx, {})["distance_m"], from_z("de", head.out(hx.mean(-2))[..., 0]))


@pytest.mark.parametrize("grad", [False, True])
def test_beam_cross_entropy_trains_the_probe_only_when_asked(grad: bool):
    """``bf_offset_grad``: the beam loss reaches the probe through the rotated prior only when true."""
    torch.manual_seed(0)
    model = wake_bf_head(build_model(ModelConfig.flavour("debug", bf_offset_grad=grad)).train())
    batch = random_batch("bf", k=3)
    out = model(batch)
    torch.nn.functional.cross_entropy(out["beam_logits"].flatten(0, 1), batch["beam"].flatten()).backward()
    assert (model.probes["bf"].weight.grad is not None and model.probes["bf"].weight.grad.abs().sum() > 0) == grad


def test_bf_label_token_reads_the_beam_angle_or_its_index():
    """"angle": a label token of the beam's and the pair's sub-6 azimuth (changing the channel changes it);
    "index": v10's embedding per beam (the channel does not enter)."""
    batch = random_batch("bf", k=3)
    other = {**batch, "h_sub6": random_batch("bf", k=3, seed=7)["h_sub6"]}
    for label, reads_h in (("angle", True), ("index", False)):
        emb = build_model(ModelConfig.flavour("debug", bf_label=label)).embedders["bf"]
        y, y_other = emb(batch)[1], emb(other)[1]
        assert y.shape == (2, 4, 1, 32)
        assert (not torch.equal(y, y_other)) == reads_h


def test_offset_bank_against_its_closed_form_and_as_a_kernel_density():
    from icwm.model.sub6 import offset_bank
    bank = offset_bank(torch.tensor([0.0, 2.0, 3.0]), 31, 30.0)          # centres -30, -28, ..., 30; width 2
    assert bank.shape == (3, 31)
    assert bank[0, 15] == 1.0 and torch.allclose(bank[0, [14, 16]], torch.full((2,), math.exp(-0.5)))
    assert bank[1, 16] == 1.0 and bank[2, 16] == bank[2, 17] == pytest.approx(math.exp(-0.125))
    # 12 pairs near +7 deg and 4 outliers near -15: the mean bank peaks at the majority, the mean offset does not
    offsets = torch.cat((7.0 + 0.5 * torch.randn(12, generator=torch.Generator().manual_seed(0)),
                         torch.tensor([-15.0, -16.0, -14.0, -15.5])))
    centres = torch.linspace(-30.0, 30.0, 31)
    assert centres[offset_bank(offsets, 31, 30.0).mean(0).argmax()] in (6.0, 8.0) and offsets.mean() < 2.0


def test_bf_label_reads_the_pairs_implied_offset_from_the_nominal():
    """With ``bf_offset_bins`` the label's last features are the bank of the offset the pair implies
    (``beams.fit_panel_offset``'s per-pair value: sub-6 azimuth less the beam's), less the stated nominal."""
    from icwm.model.sub6 import offset_bank
    from icwm.wireless import beams
    cfg = ModelConfig.flavour("debug", bf_offset_bins=7, bf_offset_span_deg=30.0)
    emb = build_model(cfg).embedders["bf"]
    batch = random_batch("bf", k=3)
    beam, h, nominal = batch["beam"], batch["h_sub6"], torch.full(batch["beam"].shape, 10.0)
    f = emb.bf_label_features(beam, h, nominal)
    assert f.shape == (*beam.shape, 2 * (1 + 2 * cfg.bf_angle_harmonics) + 7)
    implied = torch.rad2deg(beams.sub6_azimuth(h) - beams.beam_azimuth(beam, cfg.n_beams))
    assert torch.allclose(f[..., -7:], offset_bank(implied - 10.0, 7, 30.0), atol=1e-5)
    assert emb.bf_label_token(beam, h, nominal).shape == (*beam.shape, cfg.d_model)
    plain = build_model(ModelConfig.flavour("debug")).embedders["bf"]
    assert plain.bf_label_features(beam, h, nominal).shape[-1] == 2 * (1 + 2 * cfg.bf_angle_harmonics)


@pytest.mark.parametrize("over", [{"bf_offset_bins": 1}, {"bf_offset_bins": 8, "bf_label": "index"},
                                  {"bf_offset_bins": 8, "bf_offset_span_deg": 0.0}])
def test_bad_offset_bank_settings_name_the_field(over):
    field = "bf_offset_span_deg" if "bf_offset_span_deg" in over else "bf_offset_bins"
    with pytest.raises(ValueError, match=f"model.{field}"):
        ModelConfig.flavour("debug", **over)


@pytest.mark.parametrize("form", ["mean", "loglik"])
def test_bf_density_is_read_off_the_earlier_pairs_offset_banks(form: str):
    """``model.bf_density_kernel``: bf's head context carries, at pair p, the log of the mean of pairs 0..p-1's
    implied-offset banks on the probe's bins (``bf_density_form`` "mean") or the sum of their logs ("loglik"), from
    the nominal, constant over the bins at p = 0; a pair's own label never enters it."""
    from icwm.model.sub6 import DENSITY_FLOOR, offset_bank
    cfg = ModelConfig.flavour("debug", bf_probe_bins=9, bf_density_kernel=3, bf_offset_span_deg=30.0, nominal=True,
                              nominal_frame=True, bf_density_form=form)
    emb = build_model(cfg).embedders["bf"]
    batch = {**random_batch("bf", k=3), "prior_panel_offset_deg": torch.full((2, 1), 10.0)}
    ld = emb(batch)[2].log_density
    implied = torch.rad2deg(beams.sub6_azimuth(batch["h_sub6"]) - beams.beam_azimuth(batch["beam"], cfg.n_beams))
    bank = offset_bank(implied - 10.0, 9, 30.0)                                        # [B, P, 9]
    assert ld.shape == (2, 4, 9) and torch.all(ld[:, 0] == ld[:, 0, :1])
    for p in range(1, 4):
        want = (torch.log(bank[:, :p].mean(1) + DENSITY_FLOOR) if form == "mean"
                else torch.log(bank[:, :p] + DENSITY_FLOOR).sum(1))
        torch.testing.assert_close(ld[:, p], want, atol=1e-5, rtol=1e-5)
    moved = {**batch, "beam": batch["beam"].clone()}
    moved["beam"][:, 3] = (moved["beam"][:, 3] + 40) % cfg.n_beams                      # the query's own label
    assert torch.equal(emb(moved)[2].log_density, ld)
    assert build_model(ModelConfig.flavour("debug")).embedders["bf"](batch)[2].log_density is None


def test_bf_loglik_density_sharpens_with_k_where_the_mean_does_not():
    """The "loglik" form's softmax (gain 1, flat read-out) concentrates on the pairs' common offset as pairs are
    added, outliers included; the "mean" form's stays as wide (the reason for the option)."""
    from icwm.model.sub6 import demo_log_density, offset_bank
    centres = torch.linspace(-30.0, 30.0, 31)
    offsets = torch.tensor([12.0, 10.0, -20.0, 14.0] * 4 + [0.0])                     # mode 12, a quarter outliers
    bank = offset_bank(offsets, 31, 30.0)[None]                                        # [1, 17, 31]
    sd = {}
    for form in ("mean", "loglik"):
        w = torch.softmax(demo_log_density(bank, form)[0], -1)                         # [17, 31]
        mean = w @ centres
        sd[form] = ((w * (centres - mean[:, None]) ** 2).sum(-1).sqrt(), mean)
    assert sd["loglik"][0][16] < 0.5 * sd["loglik"][0][4] and sd["loglik"][0][16] < 2.0
    assert (sd["loglik"][1][16] - 12.0).abs() < 1.0
    assert sd["mean"][0][16] > 0.8 * sd["mean"][0][4]


def test_bad_density_form_names_the_field():
    with pytest.raises(ValueError, match="model.bf_density_form"):
        ModelConfig.flavour("debug", bf_density_form="sum")


@pytest.mark.parametrize("over", [{"bf_density_kernel": 3}, {"bf_density_kernel": 4, "bf_probe_bins": 9},
                                  {"bf_density_kernel": -1, "bf_probe_bins": 9},
                                  {"bf_density_kernel": 3, "bf_probe_bins": 9, "bf_label": "index"}])
def test_bad_density_kernel_settings_name_the_field(over):
    with pytest.raises(ValueError, match="model.bf_density_kernel"):
        ModelConfig.flavour("debug", **over)
