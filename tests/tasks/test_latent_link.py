"""Latent form of the single-link channel tasks (ce, cp, pf): theta = the link's statistics and its SNR, drawn once
per episode; the oracles (statistics from further snapshots of the same link), blind and in-context baselines, and
the given form left exactly as it was. Tiny systems (4-antenna ULA, 8-16 subcarriers), CPU."""
import pytest
import torch

from icwm import tasks
from icwm.tasks import ce, cp, pf
from icwm.tasks.common import add_noise, uniform
from icwm.tasks.link_common import SNAPSHOT_GAP_S, link_series
from icwm.wireless import estimation, prediction
from icwm.wireless.sysconfig import ArrayConfig, LatentConfig, SystemConfig

LINK_TASKS = (ce, cp, pf)
ORACLE_KEY = {"ce": "oracle_h", "cp": "oracle_h_fut", "pf": "oracle_h_dl"}


def tiny_cfg(form: str = "latent", oracle: int = 128, **kw) -> SystemConfig:
    base = dict(name="tiny", scenario="umi", carrier_hz=2.4e9, array=ArrayConfig(kind="ula", cols=4, pattern="iso"),
                num_users=2, num_subcarriers=8, subcarrier_spacing_hz=180e3, snr_db=[10.0, 15.0],
                speed_kmh=[30.0, 30.0], distance_m=[40.0, 150.0], form=form,
                latent=LatentConfig(oracle_snapshots=oracle))
    base.update(kw)
    return SystemConfig(**base)


def take(sample: dict, k: int) -> dict:
    """The first k demos and the query (last pair)."""
    n = sample["h_fut" if "h_fut" in sample else "h_ls" if "h_ls" in sample else "h_ul"].shape[1]
    idx = torch.tensor(list(range(k)) + [n - 1])
    return {key: v[:, idx] for key, v in sample.items()}


def nmse_db(mod, pred: torch.Tensor, sample: dict) -> float:
    """dB of the mean query NMSE of a prediction [group, pair, ...]."""
    q = {key: v[:, -1] for key, v in sample.items()}
    return float(10 * torch.log10(mod.loss({mod.Y_KEYS[0]: pred[:, -1]}, q).mean()))


@pytest.fixture(scope="module")
def latent():
    cfg = tiny_cfg()
    return {m.ID: m.generate(cfg, 4, 5, torch.Generator().manual_seed(i)) for i, m in enumerate(LINK_TASKS)}


@pytest.mark.parametrize("mod", LINK_TASKS, ids=lambda m: m.ID)
def test_latent_fields(latent, mod):
    s = latent[mod.ID]
    assert "snr_db" not in s and mod.LATENT_X == ("snr_db",)
    assert tasks.x_keys(mod, s) == tuple(k for k in mod.X_KEYS if k != "snr_db")
    snr = s["latent_snr_db"]
    assert torch.equal(snr, snr[:, :1].expand_as(snr)) and len(snr[:, 0].unique()) == snr.shape[0]
    assert ((snr >= 10.0) & (snr <= 15.0)).all() and torch.equal(s["prior_snr_db"], torch.full_like(snr, 12.5))
    label = s[mod.Y_KEYS[0]]
    assert s[ORACLE_KEY[mod.ID]].shape == label.shape and s[ORACLE_KEY[mod.ID]].dtype == torch.complex64
    no_oracle = mod.generate(tiny_cfg(oracle=0), 2, 3, torch.Generator().manual_seed(0))
    assert not any(k.startswith("oracle_") for k in no_oracle) and "latent_snr_db" in no_oracle


def test_latent_noise_is_at_the_episode_snr(latent):
    """ce: the LS error at the pilots has the variance of the group's one SNR."""
    s = latent["ce"]
    err = (s["h_ls"] - s["h"][..., ce.pilot_indices(8), :]).abs().pow(2).mean((1, 2, 3, 4))   # [group]
    torch.testing.assert_close(err, torch.pow(10.0, -s["latent_snr_db"][:, 0] / 10), rtol=0.35, atol=0)


def _old_generate(task: str, cfg: SystemConfig, g: int, n: int, rng: torch.Generator) -> dict:
    """The given form as it was before the latent form existed (reference)."""
    if task == "cp":
        h, speed = link_series(cfg, g, n * 20, rng)
        h = h.reshape((g, n, 20) + tuple(h.shape[-2:]))
        snr = uniform(cfg.snr_db[0], cfg.snr_db[1], (g, n), rng)
        return {"h_hist": add_noise(h[:, :, :16], snr, rng), "snr_db": snr, "h_fut": h[:, :, 16:],
                "speed_kmh": speed[:, None].expand(g, n)}
    n_sc = cfg.num_subcarriers * (3 if task == "pf" else 1)
    h = link_series(cfg, g, n, rng, interval_s=SNAPSHOT_GAP_S, n_sc=n_sc)[0][:, :, None]
    snr = uniform(cfg.snr_db[0], cfg.snr_db[1], (g, n), rng)
    if task == "pf":
        m = cfg.num_subcarriers
        return {"h_ul": add_noise(h[..., :m, :], snr, rng), "snr_db": snr, "h_dl": h[..., -m:, :]}
    pil = ce.pilot_indices(n_sc)
    return {"h_ls": add_noise(h[..., pil, :], snr, rng), "snr_db": snr, "h": h, "pilot_idx": pil.expand(g, n, -1)}


@pytest.mark.parametrize("mod", LINK_TASKS, ids=lambda m: m.ID)
def test_given_form_unchanged(mod):
    cfg = tiny_cfg(form="given", oracle=64)
    new = mod.generate(cfg, 2, 3, torch.Generator().manual_seed(9))
    old = _old_generate(mod.ID, cfg, 2, 3, torch.Generator().manual_seed(9))
    assert list(new) == list(old)
    for key in old:
        assert torch.equal(new[key], old[key]), key
    assert not {"oracle", "blind", "in_context"} & set(mod.baselines(new))


@pytest.mark.parametrize("mod", LINK_TASKS, ids=lambda m: m.ID)
def test_baselines_read_neither_theta_nor_the_query_label(latent, mod):
    s = take(latent[mod.ID], 3)
    out = mod.baselines(s)
    assert {"oracle", "blind", "in_context"} <= set(out) and "lmmse" not in out
    y = mod.Y_KEYS[0]
    torch.testing.assert_close(out["oracle"][y], s[ORACLE_KEY[mod.ID]])
    blinded = {k: v for k, v in s.items() if not k.startswith(("latent_", "prior_", "oracle_"))}
    blinded[y] = blinded[y].clone()
    blinded[y][:, -1] = torch.randn_like(blinded[y][:, -1])
    blinded["snr_db"] = torch.full_like(s["latent_snr_db"], 1e3)     # a wrong SNR nobody may read
    blinded["latent_snr_db"] = s["latent_snr_db"]                      # still a latent sample
    again = mod.baselines(blinded)
    assert set(again) == set(out) - {"oracle"}
    for name, pred in again.items():
        torch.testing.assert_close(pred[y][:, -1], out[name][y][:, -1], msg=name)
    zero_shot = mod.baselines(take(s, 0))
    torch.testing.assert_close(zero_shot["in_context"][y], zero_shot["blind"][y])


def test_ce_in_context_lmmse_tends_to_the_oracle():
    s = ce.generate(tiny_cfg(num_subcarriers=16), 4, 65, torch.Generator().manual_seed(0))
    orc = s["oracle_h"][:, -1]
    dist = []
    for k in (1, 4, 64):
        ic = ce.baselines(take(s, k))["in_context"]["h"][:, -1]
        dist.append(float(((ic - orc).abs().pow(2).sum((-3, -2, -1)) / orc.abs().pow(2).sum((-3, -2, -1))).mean()))
    assert dist[2] < 0.2 * dist[1] < 0.2 * dist[0] and dist[2] < 0.01, dist
    blind = nmse_db(ce, ce.baselines(take(s, 0))["blind"]["h"], s)
    assert nmse_db(ce, s["oracle_h"], s) < blind - 2.0


def test_ce_demo_noise_estimate_converges():
    s = ce.generate(tiny_cfg(num_subcarriers=16), 4, 65, torch.Generator().manual_seed(1))
    true = torch.pow(10.0, -s["latent_snr_db"][:, 0] / 10)
    err = [float((ce.demo_statistics(take(s, k)["h_ls"], take(s, k)["h"])[1][:, 0] / true - 1).abs().max())
           for k in (1, 64)]
    assert err[1] < 0.15 and err[1] < err[0], err      # 1024 residuals at k = 64: 3 % standard deviation
    g = torch.Generator().manual_seed(2)
    h = torch.randn(200, 1, 8, 4, 2, generator=g)
    h = torch.view_as_complex(h)
    est = estimation.noise_var_at_pilots(add_noise(h, torch.full((200,), 6.0), g), h)
    torch.testing.assert_close(est.mean(), torch.tensor(10 ** -0.6), rtol=0.02, atol=0)


def test_cp_in_context_approaches_the_oracle_and_beats_blind_on_a_slow_link():
    """30 km/h at 2.4 GHz, 0.5 ms sampling: f_d T = 0.03, a window spans 0.7 Doppler cycles."""
    s = cp.generate(tiny_cfg(oracle=256, num_subcarriers=16), 4, 65, torch.Generator().manual_seed(0))
    blind = nmse_db(cp, cp.baselines(take(s, 0))["blind"]["h_fut"], s)
    oracle = nmse_db(cp, s["oracle_h_fut"], s)
    ic = [nmse_db(cp, cp.baselines(take(s, k))["in_context"]["h_fut"], s) for k in (4, 64)]
    assert oracle < blind - 0.5 and ic[1] < blind - 0.5 and ic[1] < ic[0], (oracle, blind, ic)
    assert ic[1] - oracle < 0.5 * (blind - oracle), (oracle, blind, ic)


def test_pf_in_context_band_map_approaches_the_oracle():
    s = pf.generate(tiny_cfg(), 4, 65, torch.Generator().manual_seed(0))
    oracle = nmse_db(pf, s["oracle_h_dl"], s)
    blind = nmse_db(pf, pf.baselines(take(s, 0))["blind"]["h_dl"], s)
    ic = [nmse_db(pf, pf.baselines(take(s, k))["in_context"]["h_dl"], s) for k in (4, 64)]
    assert oracle < ic[1] + 0.3 and ic[1] < ic[0] < blind, (oracle, blind, ic)
    assert ic[1] - oracle < 0.3 * (ic[0] - oracle) and ic[1] - oracle < 1.0, (oracle, ic)


def test_window_covariance_is_the_sliding_window_average():
    g = torch.Generator().manual_seed(3)
    h = torch.view_as_complex(torch.randn(2, 30, 3, 4, 2, generator=g, dtype=torch.float64))
    x = prediction.to_beams(h).unfold(-3, 6, 1)                                   # [2, 25, sc, beam, 6]
    ref = torch.einsum("...wsbi,...wsbj->...bij", x, x.conj()) / (25 * 3)
    torch.testing.assert_close(prediction.window_covariance(h, 6), ref)
    torch.testing.assert_close(prediction.window_covariance(h, 6, per_beam=False), ref.mean(-3, keepdim=True))


def test_window_fit_recovers_a_linear_map_and_shrinks_to_the_prior():
    g = torch.Generator().manual_seed(4)
    cn = lambda *s: torch.view_as_complex(torch.randn(*s, 2, generator=g, dtype=torch.float64))   # noqa: E731
    w_true, prior = cn(4, 2, 6), cn(1, 2, 6)                                     # [beam, t_out, t_in]
    hist = cn(10, 6, 5, 4)                                                        # [n, t_in, sc, ant]
    x = prediction.to_beams(hist)
    fut = prediction.from_beams(torch.einsum("boi,nisb->nosb", w_true, x))
    gram, cross = prediction.window_stats(hist, fut)
    torch.testing.assert_close(prediction.window_fit(gram, cross, prior, 0.0), w_true, rtol=1e-4, atol=1e-4)
    far = prediction.window_fit(gram, cross, prior, 1e6)
    torch.testing.assert_close(far, prior.expand_as(far), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(prediction.window_predict(w_true, hist[0]), fut[0])


def test_ar_window_map_is_the_iterated_ar_predictor():
    g = torch.Generator().manual_seed(5)
    h = torch.view_as_complex(torch.randn(3, 16, 5, 4, 2, generator=g, dtype=torch.float64))
    w = prediction.ar_window_map(h, 4)
    torch.testing.assert_close(torch.einsum("...oi,...isa->...osa", w, h), prediction.ar_predict(h, 4))
