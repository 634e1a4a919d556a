"""Latent form of the precoding tasks (docs/contracts.md "Latent form"): fields, metric physics, the SNR fitted to
demonstrations' labels, and the oracle / blind / in-context baselines, at tiny sizes."""
import math

import pytest
import torch

from icwm import tasks
from icwm.tasks import precoding_common as pc
from icwm.tasks.common import crandn, replace
from icwm.wireless import maxmin, precoding
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig

PRE = ("pre_sr", "pre_mm")
SNR_RANGE = [-5.0, 25.0]
PRIMARY = {"pre_sr": "sum_rate", "pre_mm": "min_sinr_db"}


def cfg_of(num_ant: int = 4, num_users: int = 2, form: str = "latent") -> SystemConfig:
    return SystemConfig(name="tiny", scenario="umi", los=False, carrier_hz=2.4e9,
                        array=ArrayConfig(kind="ula", cols=num_ant, pattern="iso"), num_users=num_users,
                        num_subcarriers=1, snr_db=SNR_RANGE, distance_m=[40.0, 150.0], form=form)


@pytest.fixture(scope="module")
def latent():
    """3 groups x 4 samples of each task, Nt = 4, K = 2."""
    return {t: tasks.get(t).generate(cfg_of(), 3, 4, torch.Generator().manual_seed(i)) for i, t in enumerate(PRE)}


@pytest.fixture(scope="module")
def loaded():
    """24 episodes of 16 demos + query on a loaded system (Nt = 8, K = 4, SNR -5..25 dB; oracle - blind is about
    5 standard errors for both tasks)."""
    cfg = cfg_of(num_ant=8, num_users=4)
    return {t: tasks.get(t).generate(cfg, 24, 17, torch.Generator().manual_seed(3 + i)) for i, t in enumerate(PRE)}


def query(d: dict) -> dict:
    return {k: v[:, -1] for k, v in d.items()}


def rayleigh_demos(n_ep: int, n_demo: int, K: int, nt: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """i.i.d. CN(0, 1) channels [ep, demo, K, nt] and one SNR per episode [ep] uniform in SNR_RANGE."""
    g = torch.Generator().manual_seed(seed)
    snr = SNR_RANGE[0] + (SNR_RANGE[1] - SNR_RANGE[0]) * torch.rand(n_ep, generator=g)
    return crandn((n_ep, n_demo, K, nt), g), snr


@pytest.mark.parametrize("task_id", PRE)
def test_latent_generate_fields(latent, task_id):
    """snr_db absent from every pair; one SNR per group in range; prior = centre; labels at the true SNR."""
    s, mod = latent[task_id], tasks.get(task_id)
    assert "snr_db" not in s and mod.LATENT_X == ("snr_db",)
    assert tasks.x_keys(mod, s) == ("h",)
    snr = s["latent_snr_db"]
    assert torch.equal(snr, snr[:, :1].expand_as(snr)) and len(set(snr[:, 0].tolist())) == 3
    assert bool(((snr >= SNR_RANGE[0]) & (snr <= SNR_RANGE[1])).all())
    assert torch.equal(s["prior_snr_db"], torch.full_like(snr, 10.0))
    h, p = pc.unpack({}, s)
    if task_id == "pre_mm":
        ref = maxmin.maxmin_sinr(h, p)
        assert torch.allclose(s["sinr_opt_db"].reshape(-1), ref.sinr_db.float(), atol=1e-4)
        assert torch.allclose(s["lam_p"].reshape(-1, 2, 2), ref.lam_p.float(), atol=1e-6)
    else:
        ref = precoding.sum_rate(h, precoding.wmmse(h, p, iters=20, init="rzf"))
        assert torch.allclose(s["rate_wmmse"].reshape(-1), ref.float(), rtol=1e-4)


@pytest.mark.parametrize("task_id", PRE)
def test_given_form_unchanged_and_latent_shares_channels(task_id):
    """Given form: exactly ``draw`` + the label solver, same keys in the same order; the latent form with the same
    seed draws the same channels (only the SNR draw differs)."""
    mod, cfg = tasks.get(task_id), cfg_of(form="given")
    s = mod.generate(cfg, 2, 3, torch.Generator().manual_seed(9))
    h, snr = pc.draw(cfg, 6, torch.Generator().manual_seed(9))
    meta = "rate_wmmse" if task_id == "pre_sr" else "sinr_opt_db"
    assert list(s) == ["h", "snr_db", "lam_p", meta]
    assert torch.equal(s["h"].reshape(6, 2, 4), h) and torch.equal(s["snr_db"].reshape(6), snr)
    if task_id == "pre_mm":
        assert torch.equal(s["lam_p"].reshape(6, 2, 2), maxmin.maxmin_sinr(h, 10 ** (snr / 10)).lam_p.float())
    lat = mod.generate(replace(cfg, form="latent"), 2, 3, torch.Generator().manual_seed(9))
    assert torch.equal(lat["h"], s["h"])
    assert list(lat) == ["h", "lam_p", meta, "latent_snr_db", "prior_snr_db"]


@pytest.mark.parametrize("task_id", PRE)
def test_latent_metric_invariant_to_scaling_w(latent, task_id):
    """The transmitter always uses its full budget: any scaling of W scores the same; a full-power W scores as in
    the given form at the true SNR (where scaling does matter)."""
    s, mod = query(latent[task_id]), tasks.get(task_id)
    W = mod.baselines(latent[task_id])["oracle"]["W"][:, -1]
    scale = torch.tensor([0.01, 3.0, 100.0])[:, None, None]
    a, b = mod.metric({"W": W}, s), mod.metric({"W": W * scale}, s)
    key = PRIMARY[task_id]
    assert torch.allclose(a[key], b[key], atol=1e-4)
    given = {"h": s["h"], "snr_db": s["latent_snr_db"], **{k: s[k] for k in s if k in ("rate_wmmse", "sinr_opt_db")}}
    W_full = precoding.scale_to_power(s["h"], W, 10 ** (s["latent_snr_db"] / 10))
    assert torch.allclose(mod.metric({"W": W_full}, given)[key], a[key], atol=1e-4)
    assert not torch.allclose(mod.metric({"W": W_full * scale}, given)[key], a[key], atol=1e-2)


@pytest.mark.parametrize("task_id", PRE)
def test_lam_p_rendered_at_the_predicted_snr(loaded, task_id):
    """The label with the true SNR reaches the optimum; rendered at the prior it does not; the loss is
    differentiable in lam_p and snr_db (checked off the label, whose switched-off users sit on sqrt's kink)."""
    s, mod = query(loaded[task_id]), tasks.get(task_id)
    at_true = mod.metric({"lam_p": s["lam_p"], "snr_db": s["latent_snr_db"]}, s)
    at_prior = mod.metric({"lam_p": s["lam_p"]}, s)
    if task_id == "pre_mm":
        assert float(at_true["gap_db"].abs().max()) < 0.05
        assert float(at_prior["gap_db"].mean()) > 0.3
    else:
        assert float(at_true["rate_ratio"].min()) > 0.99
        assert float(at_prior["sum_rate"].mean()) < float(at_true["sum_rate"].mean()) - 0.1
    lam_p = (0.9 * s["lam_p"] + 0.1 / s["lam_p"].shape[-2]).requires_grad_(True)
    snr = s["latent_snr_db"].clone().requires_grad_(True)
    mod.loss({"lam_p": lam_p, "snr_db": snr}, s).sum().backward()
    assert torch.isfinite(lam_p.grad).all() and float(lam_p.grad.abs().sum()) > 0
    assert torch.isfinite(snr.grad).all() and float(snr.grad.abs().sum()) > 0


@pytest.mark.parametrize("solver", ["wmmse", "maxmin"])
def test_fit_snr_converges_with_more_demos(solver):
    """The SNR fitted to (h, lam_p) demos: exact for max-min labels; for WMMSE-100 labels (not all converged at
    high SNR) the error is small at 16 demos and falls from 1 to 16 demos (a single demo may carry no information,
    one active user: NaN)."""
    h, snr = rayleigh_demos(24, 16, 4, 4, seed=5)
    p = (10 ** (snr / 10))[:, None].expand(24, 16)
    if solver == "wmmse":
        lam_p, fit = pc.structure_of(h, precoding.wmmse(h, p, iters=100, init="rzf"), p), precoding.fit_snr_db
    else:
        lam_p, fit = maxmin.maxmin_sinr(h, p).lam_p.float(), maxmin.fit_snr_db
    err = {k: (fit(h[:, :k], lam_p[:, :k]) - snr).abs() for k in (1, 4, 16)}
    assert float(err[16].mean()) < 0.02 and float(err[16].max()) < 0.2
    assert float(err[16].mean()) <= float(err[4].nanmean()) <= float(err[1].nanmean())
    if solver == "maxmin":
        assert float(err[1].max()) < 0.01


def test_fit_snr_rejects_mismatched_labels():
    h, _ = rayleigh_demos(2, 3, 2, 4, seed=0)
    with pytest.raises(ValueError, match="lam_p"):
        precoding.fit_snr_db(h, torch.rand(2, 3, 2, 3))
    with pytest.raises(ValueError, match="h"):
        maxmin.fit_snr_db(h[0, 0], torch.rand(2, 2))


@pytest.mark.parametrize("task_id", PRE)
def test_oracle_beats_blind_and_in_context_reaches_oracle(loaded, task_id):
    """Loaded system: oracle - blind > 2 standard errors; in_context at k = 16 within 5 % of that gap of the oracle;
    at k = 0 in_context is blind."""
    s, mod = loaded[task_id], tasks.get(task_id)
    q, key = query(s), PRIMARY[task_id]
    m = {name: mod.metric(query(pred), q)[key] for name, pred in mod.baselines(s).items()}
    gap = m["oracle"] - m["blind"]
    assert float(gap.mean()) > 2 * float(gap.std()) / math.sqrt(gap.numel())
    assert float((m["oracle"] - m["in_context"]).mean()) < 0.05 * float(gap.mean())
    k0 = mod.baselines({k: v[:, -1:] for k, v in s.items()})
    assert torch.equal(k0["in_context"]["W"], k0["blind"]["W"])


@pytest.mark.parametrize("task_id", PRE)
def test_latent_baselines_read_neither_query_label_nor_latent(latent, task_id):
    """Changing the query's label and the episode's latent SNR leaves every baseline but the oracle unchanged."""
    s, mod = latent[task_id], tasks.get(task_id)
    t = dict(s)
    t["lam_p"] = s["lam_p"].clone()
    t["lam_p"][:, -1] = t["lam_p"][:, -1].flip(-2)
    t["latent_snr_db"] = s["latent_snr_db"] + 7.0
    a, b = mod.baselines(s), mod.baselines(t)
    assert set(a) == {"mrt", "zf", "rzf", "oracle", "blind", "in_context"}
    for method in set(a) - {"oracle"}:
        assert torch.equal(a[method]["W"][:, -1], b[method]["W"][:, -1]), method
    assert not torch.equal(a["oracle"]["W"][:, -1], b["oracle"]["W"][:, -1])
    for method in ("oracle", "blind", "in_context"):      # solved on the query only
        assert torch.isnan(a[method]["W"][:, :-1]).all() and torch.isfinite(a[method]["W"][:, -1]).all()
