"""det in the latent form (docs/contracts.md "Latent form"): one coherence block per episode, the demos as pilots."""
import math

import pytest
import torch

from icwm import tasks
from icwm.tasks import det
from icwm.wireless import detection
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig

G, S = 48, 17   # episodes, pairs per episode (16 demos + the query)


def tiny_cfg(**kw) -> SystemConfig:
    base = dict(name="tiny_det", scenario="umi", array=ArrayConfig(kind="ula", cols=4, pattern="iso"), num_users=2,
                num_subcarriers=1, snr_db=[8.0, 12.0], speed_kmh=[30.0, 30.0], distance_m=[40.0, 150.0])
    base.update(kw)
    return SystemConfig(**base)


@pytest.fixture(scope="module")
def latent():
    return det.generate(tiny_cfg(form="latent"), G, S, torch.Generator().manual_seed(7))


def take(sample: dict, k: int) -> dict:
    """The first k demos and the query of [episode, pair, ...] tensors."""
    idx = torch.tensor(list(range(k)) + [S - 1])
    return {key: v[:, idx] for key, v in sample.items()}


def query_ser(pred: dict, sample: dict) -> torch.Tensor:
    """Per-episode SER of the query [episode]."""
    q = {key: v[:, -1] for key, v in sample.items()}
    return det.metric({"x": pred["x"][:, -1]}, q)["ser"]


def test_latent_sample_hides_h_and_snr_and_keeps_the_physics(latent):
    given = det.generate(tiny_cfg(), G, S, torch.Generator().manual_seed(7))
    assert set(given) == {"h", "y", "snr_db", "x", "x_idx"}
    assert set(latent) == {"y", "x", "x_idx", "latent_h", "latent_snr_db", "prior_snr_db"}
    assert tasks.x_keys(det, latent) == ("y",) and tasks.x_keys(det, given) == det.X_KEYS
    for key in ("y", "x", "x_idx"):                        # the same draws as the given form
        assert torch.equal(latent[key], given[key]), key
    assert torch.equal(latent["latent_h"], given["h"]) and torch.equal(latent["latent_snr_db"], given["snr_db"])
    assert torch.allclose(latent["prior_snr_db"], torch.full((G, S), 10.0))


def test_pairs_of_an_episode_share_h_and_the_noise_level(latent):
    h, snr = latent["latent_h"], latent["latent_snr_db"]
    assert tuple(h.shape) == (G, S, 4, 2)
    assert torch.equal(h[:, :1].expand_as(h), h) and torch.equal(snr[:, :1].expand_as(snr), snr)
    assert ((snr >= 8.0) & (snr <= 12.0)).all() and snr[:, 0].std() > 0.3
    resid = latent["y"] - torch.einsum("gsrk,gslk->gslr", h, latent["x"])
    noise_var = detection.noise_var_from_snr(snr, 2)[:, :, None, None]
    ratio = resid.abs().pow(2) / noise_var                 # Exp(1) entries if the noise is at latent_snr_db
    assert abs(ratio.mean().item() - 1.0) < 4.0 / math.sqrt(ratio.numel())
    per_episode = ratio.mean((1, 2, 3))                    # 17 * 8 * 4 entries each
    assert (per_episode - 1.0).abs().max() < 0.35


@pytest.mark.parametrize("k", [1, 2, 4, 16])
def test_channel_estimate_error_matches_its_closed_form(k):
    """E ||h_hat - h||^2 = rx noise_var tr((X^H X)^-1): NMSE falls about as 1 / k."""
    b = detection.draw_batch((400,), 8 * k, 4, 2, 10.0, torch.Generator().manual_seed(k))
    h_hat, _ = detection.estimate_channel(b["y"], b["x"])
    err = (h_hat - b["h"]).abs().pow(2).sum((-2, -1))
    trace = torch.linalg.inv(b["x"].mH @ b["x"]).diagonal(dim1=-2, dim2=-1).real.sum(-1)
    expect = 4 * b["noise_var"] * trace
    assert abs(err.mean() / expect.mean() - 1.0) < 0.1
    nmse = err.mean() / b["h"].abs().pow(2).sum((-2, -1)).mean()
    assert 0.7 < nmse * (8 * k - 2) / b["noise_var"] < 1.3   # NMSE ~ noise_var / (n - K), n = 8 k pilots


def test_noise_estimate_is_unbiased_and_converges():
    ratios = {}
    for k in (1, 16):
        b = detection.draw_batch((600,), 8 * k, 4, 2, 10.0, torch.Generator().manual_seed(100 + k))
        ratios[k] = detection.estimate_channel(b["y"], b["x"])[1] / b["noise_var"]
    r1 = ratios[1]
    assert abs(r1.mean() - 1.0) < 3.0 * r1.std() / math.sqrt(r1.numel())   # dof-corrected (plain mean: 0.75)
    assert abs(ratios[16].mean() - 1.0) < 0.02 and ratios[16].std() < 0.08 < 0.15 < r1.std()


def test_in_context_reaches_the_oracle_at_16_demos(latent):
    out = det.baselines(latent)
    assert set(out) == {"oracle", "oracle_ml", "blind", "in_context"}
    oracle, ic = query_ser(out["oracle"], latent), query_ser(out["in_context"], latent)
    diff = ic - oracle
    assert 0.05 < oracle.mean() < 0.5                      # a regime where SER differences are visible
    assert abs(diff.mean()) < 3.0 * diff.std() / math.sqrt(G) + 1e-3
    one = take(latent, 1)
    ic1 = query_ser(det.baselines(one)["in_context"], one)
    assert ic1.mean() > oracle.mean() + 0.02               # one demo (8 pilots) is a noisy channel estimate
    ml = query_ser(out["oracle_ml"], latent)
    assert ml.mean() <= oracle.mean() + 0.02


def test_blind_is_chance_and_in_context_without_demos_is_blind(latent):
    zero = take(latent, 0)
    out = det.baselines(zero)
    assert torch.equal(out["in_context"]["x"], out["blind"]["x"])
    ser = query_ser(out["blind"], zero)
    n = ser.numel() * 8 * 2
    assert abs(ser.mean() - 15 / 16) < 3.0 * math.sqrt(15 / 256 / n)


def test_in_context_reads_neither_the_query_label_nor_the_latents(latent):
    sample = take(latent, 2)
    ref = det.baselines(sample)["in_context"]["x"]
    spoiled = {key: v.clone() for key, v in sample.items()}
    spoiled["x"][:, -1] = 0.0
    spoiled["x_idx"][:, -1] = 0
    spoiled["latent_h"] = torch.zeros_like(spoiled["latent_h"])
    spoiled["latent_snr_db"] = torch.zeros_like(spoiled["latent_snr_db"])
    assert torch.equal(det.baselines(spoiled)["in_context"]["x"], ref)


def test_estimator_bad_inputs_name_the_field():
    b = detection.draw_batch((2,), 2, 4, 2, 10.0, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="x_pilots"):
        detection.estimate_channel(b["y"], b["x"])            # 2 pilot slots for 2 users: no residual
    with pytest.raises(ValueError, match="y_pilots"):
        detection.estimate_channel(b["y"][..., :1, :], b["x"])
