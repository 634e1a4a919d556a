"""Latent form of the dual-band tasks (docs/contracts.md "Latent form"): bf's mmWave panel offset, de / pe's cell
power offset, their oracle / blind / in-context baselines, and the given form left as it was."""
import math

import pytest
import torch

from icwm import tasks
from icwm.tasks import dual_common as dc
from icwm.tasks.common import LATENT_METHODS, is_latent, replace
from icwm.wireless import arrays, beams, dualband, fingerprint
from icwm.wireless.channels import draw_geometry, sample_links, sionna_seeded
from icwm.wireless.sysconfig import ArrayConfig, DualBandConfig, LatentConfig, SystemConfig

DUAL = ("bf", "de", "pe")


def dual_cfg(**kw) -> SystemConfig:
    base = dict(name="tiny_dual", scenario="umi", carrier_hz=2.4e9,
                array=ArrayConfig(kind="ula", cols=4, pattern="iso"),
                num_users=2, speed_kmh=[30.0, 30.0], distance_m=[40.0, 150.0], bs_height_m=10.0,
                dual_band=DualBandConfig(sub6_ant=8, sub6_subcarriers=8, mmw_ant=32, mmw_subcarriers=4,
                                         codebook_size=128))
    base.update(kw)
    return SystemConfig(**base)


def take(sample: dict, k: int) -> dict:
    """The first k demos and the query of [group, pair, ...] episodes."""
    n = next(iter(sample.values())).shape[1]
    idx = torch.tensor(list(range(k)) + [n - 1])
    return {key: v[:, idx] for key, v in sample.items()}


def test_panel_offset_rotates_the_los_ray_by_phi():
    """One LOS ray (K-factor forced huge): the mmWave sweep's best beam is the one nearest to
    u = 1/2 sin(aod - phi) sin(zod) for phi = 0 and phi = 12 degrees; a rotation really moves it."""
    cfg = dual_cfg(los=True, num_users=6)
    db = cfg.dual_band
    geo = draw_geometry(cfg, 2, torch.Generator().manual_seed(3))
    with sionna_seeded(7):
        links = sample_links(cfg, geo, arrays.ula(db.sub6_ant, "iso", db.sub6_carrier_hz), db.sub6_carrier_hz, "cpu")
        links.lsp.k_factor = torch.full_like(links.lsp.k_factor, 1e7)
        cb = beams.dft_codebook(db.mmw_ant, db.codebook_size)
        best = {}
        for phi in (0.0, 12.0):
            rot = dualband.rotated(links, torch.full((2,), math.radians(phi)))
            hm = dualband._band(rot, db.mmw_ant, "iso", db.mmw_carrier_hz, db.mmw_subcarriers, db.mmw_spacing_hz,
                                cfg.sampling_interval_s, "cpu")
            t = links.topology
            u = 0.5 * torch.sin(t.los_aod[:, 0] - math.radians(phi)) * torch.sin(t.los_zod[:, 0])   # [drop, user]
            best[phi] = beams.best_beam(hm, cb)
            assert torch.equal(best[phi], beams.nearest_beam(u, db.codebook_size)), phi
    assert (best[12.0] != best[0.0]).all()


def test_panel_offset_leaves_the_sub6_band_and_path_loss_unchanged():
    cfg = dual_cfg(num_users=3)
    a = dualband.generate_dual_band(cfg, 2, torch.Generator().manual_seed(4))
    b = dualband.generate_dual_band(cfg, 2, torch.Generator().manual_seed(4), panel_offset_deg=[15.0, 15.0])
    assert torch.equal(a.h_sub6, b.h_sub6) and torch.equal(a.pathloss_db, b.pathloss_db)
    assert torch.equal(a.panel_offset_deg, torch.zeros(2)) and torch.equal(b.panel_offset_deg, torch.full((2,), 15.0))
    assert (a.h_mmw - b.h_mmw).abs().pow(2).mean() > 0.1 * a.h_mmw.abs().pow(2).mean()
    torch.testing.assert_close(b.h_mmw.abs().pow(2).mean(), a.h_mmw.abs().pow(2).mean(), rtol=0.5, atol=0)


def test_latent_bf_draws_one_offset_per_episode_after_the_given_draws():
    cfg = dual_cfg(num_users=3)
    lat = replace(cfg, form="latent", latent=LatentConfig(panel_offset_deg=[-20.0, 20.0]))
    g = tasks.get("bf").generate(cfg, 3, 4, torch.Generator().manual_seed(5))
    s = tasks.get("bf").generate(lat, 3, 4, torch.Generator().manual_seed(5))
    assert is_latent(s) and not is_latent(g) and set(g) == {"h_sub6", "beam", "beam_gain"}
    assert torch.equal(s["h_sub6"], g["h_sub6"])                          # same drop, same sub-6 channel
    phi = s["latent_panel_offset_deg"]
    assert torch.equal(phi, phi[:, :1].expand_as(phi)) and (phi.abs() <= 20).all() and phi[:, 0].unique().numel() == 3
    assert torch.equal(s["prior_panel_offset_deg"], torch.zeros(3, 4))
    assert tasks.x_keys(tasks.get("bf"), s) == ("h_sub6",)


@pytest.mark.parametrize("task_id", ("de", "pe"))
def test_power_offset_shifts_the_received_level_by_delta_and_keeps_the_labels(task_id):
    mod = tasks.get(task_id)
    cfg = dual_cfg(num_users=3)
    g = mod.generate(cfg, 3, 4, torch.Generator().manual_seed(6))
    s = mod.generate(replace(cfg, form="latent"), 3, 4, torch.Generator().manual_seed(6))
    delta = s["latent_power_offset_db"]
    assert torch.equal(delta, delta[:, :1].expand_as(delta)) and (delta.abs() <= 10).all()
    shift = fingerprint.rx_power_db(s["h_sub6"]) - fingerprint.rx_power_db(g["h_sub6"])
    torch.testing.assert_close(shift, delta, atol=1e-4, rtol=0)
    assert torch.equal(s[mod.Y_KEYS[0]], g[mod.Y_KEYS[0]])
    assert torch.equal(s["prior_power_offset_db"], torch.zeros(3, 4))


def test_given_form_keys_and_tensors_are_those_of_the_plain_dual_band_draw():
    """The given form is the draw it always was: channels.generate_dual_band of the same generator state."""
    cfg = dual_cfg(num_users=3)
    d = dualband.generate_dual_band(cfg, 2, torch.Generator().manual_seed(8))
    keys = {"bf": {"h_sub6", "beam", "beam_gain"}, "de": {"h_sub6", "distance_m"}, "pe": {"h_sub6", "pathloss_db"}}
    for task_id in DUAL:
        s = tasks.get(task_id).generate(cfg, 2, 3, torch.Generator().manual_seed(8))
        assert set(s) == keys[task_id]
        assert torch.equal(s["h_sub6"], d.h_sub6)
    assert torch.equal(tasks.get("pe").generate(cfg, 2, 3, torch.Generator().manual_seed(8))["pathloss_db"],
                       d.pathloss_db)


def test_fit_panel_offset_is_exact_on_consistent_pairs_and_ignores_outliers():
    n_beams = 256
    az = torch.deg2rad(torch.tensor([-30.0, -5.0, 10.0, 25.0, 40.0]))
    beam = beams.rotated_angle_map(az, n_beams, 12.0)                     # labels of a 12-degree panel offset
    beam[3] = (beam[3] + 60) % n_beams                                      # one demo whose best beam is another path
    use = fingerprint.demo_mask(5).expand(5, 5)
    fit = beams.fit_panel_offset(az, beam, use, n_beams)
    assert (fit[[0, 1, 2, 4]] - 12.0).abs().max() < 0.5                     # beam quantisation only
    assert (fit[-1] - 12.0).abs() < 0.5
    lone = beams.fit_panel_offset(az[:1], beam[:1], fingerprint.demo_mask(1), n_beams)
    assert lone.isnan().all()


def test_demo_mask_is_leave_one_out_and_hides_the_query():
    m = fingerprint.demo_mask(4)
    assert torch.equal(m, torch.tensor([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0]]).bool())


@pytest.fixture(scope="module")
def latent_samples():
    cfg = dual_cfg(los=True, num_users=2, form="latent")
    return {t: tasks.get(t).generate(cfg, 8, 17, torch.Generator().manual_seed(10 + i)) for i, t in enumerate(DUAL)}


def _query_metric(task_id: str, sample: dict, k: int, name: str) -> dict[str, torch.Tensor]:
    mod = tasks.get(task_id)
    sub = take(sample, k)
    q = {key: v[:, -1] for key, v in sub.items()}
    return {m: mod.metric({key: v[:, -1] for key, v in p.items()}, q)[name] for m, p in mod.baselines(sub).items()}


def test_bf_in_context_offset_converges_to_the_truth(latent_samples):
    s = latent_samples["bf"]
    az = beams.sub6_azimuth(s["h_sub6"])
    err = {}
    for k in (1, 4, 16):
        sub_az, sub_beam = take({"a": az, "b": s["beam"]}, k).values()
        use = fingerprint.demo_mask(k + 1).expand(8, k + 1, k + 1)
        fit = beams.fit_panel_offset(sub_az, sub_beam, use, 128)[:, -1]
        err[k] = (fit - s["latent_panel_offset_deg"][:, -1]).abs().median()
    assert err[16] < err[1] and err[16] < 1.0, err


@pytest.mark.parametrize("task_id", ("de", "pe"))
def test_power_in_context_offset_converges_to_the_truth(latent_samples, task_id):
    """The calibrated Delta (in_context's offset on the Delta = 0 estimate) approaches the true Delta with k
    (isotropic elements: the classical estimate is unbiased up to the fading average)."""
    s = latent_samples[task_id]
    err = {}
    for k in (1, 4, 16):
        sub = take(s, k)
        base = dc.pathloss_estimate(sub, torch.zeros(()))
        law = sub["pl_law_db"]
        target = sub["pathloss_db"] if task_id == "pe" else law[..., 0] + law[..., 1] * torch.log10(sub["distance_m"])
        fit = dc.power_offset_fits(sub, base, target)["in_context"][:, -1]
        err[k] = (fit - sub["latent_power_offset_db"][:, -1]).abs().mean()
    assert err[16] < err[1], err
    assert err[16] < (2.0 if task_id == "pe" else 4.0), err


@pytest.mark.parametrize("task_id,name,sign", [("bf", "gain_ratio", 1), ("de", "mae_m", -1), ("pe", "mae_db", -1)])
def test_oracle_beats_blind_and_in_context_approaches_oracle(latent_samples, task_id, name, sign):
    m0, m16 = (_query_metric(task_id, latent_samples[task_id], k, name) for k in (0, 16))
    oracle, blind = sign * m0["oracle"].mean(), sign * m0["blind"].mean()
    assert oracle > blind
    assert torch.equal(m0["in_context"], m0["blind"])                     # k = 0: in_context is blind
    assert sign * m16["in_context"].mean() > blind
    assert torch.equal(m16["oracle"], m0["oracle"]) and torch.equal(m16["blind"], m0["blind"])


@pytest.mark.parametrize("task_id", DUAL)
def test_latent_baselines_never_read_the_query_label_or_latent_outside_the_oracle(latent_samples, task_id):
    mod = tasks.get(task_id)
    s = take(latent_samples[task_id], 4)
    t = dict(s)
    y = s[mod.Y_KEYS[0]].clone()
    y[:, -1] = (y[:, -1] + 5) % 128 if y.dtype == torch.int64 else y[:, -1] * 3 + 1
    t[mod.Y_KEYS[0]] = y
    latent_key = next(k for k in s if k.startswith("latent_"))
    t[latent_key] = s[latent_key] + 7.0
    a, b = mod.baselines(s), mod.baselines(t)
    assert set(LATENT_METHODS) <= set(a)
    for method in a:
        for key in a[method]:
            same = torch.equal(a[method][key][:, -1], b[method][key][:, -1])
            assert same == (method != "oracle"), (method, key)
