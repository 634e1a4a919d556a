"""The latent probe's read-out: linear by default (the shipped weights' keys), an MLP with ``model.probe_hidden``."""
import dataclasses

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.model.precoding import N_LEVELS, N_MAP
from icwm.train.objective import latent_losses
from model_batches import latent_batch, random_batch


def test_default_probe_is_linear_with_the_shipped_keys():
    model = build_model(ModelConfig.flavour("debug"))
    keys = [k for k in model.state_dict() if k.startswith("probes.pre_sr.")]
    assert sorted(keys) == ["probes.pre_sr.bias", "probes.pre_sr.weight"]


def test_mlp_probe_starts_at_no_offset_and_trains_with_the_trunk():
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), probe_hidden=16)
    model = build_model(cfg).train()
    probe = model.probes["bf"]
    assert isinstance(probe, torch.nn.Sequential) and probe[0].out_features == 16
    assert torch.equal(probe[-1].bias, torch.zeros_like(probe[-1].bias))
    batch = {**random_batch("bf", k=3), "latent_panel_offset_deg": torch.full((2, 4), 15.0)}
    out = model(batch)
    assert out["latent_hat_panel_offset_deg"].shape == (2, 4)
    latent_losses(out, batch).mean().backward()
    assert probe[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters() if p.dim() > 1)


def test_probe_skip_reads_the_tokens_before_the_trunk():
    """With ``model.probe_skip`` the probe's input is [trunk output, embedder output]: the estimate moves with the
    embedder's x-tokens even when the trunk's output is held fixed, and its loss trains the embedder directly."""
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), probe_skip=True, probe_hidden=8)
    model = build_model(cfg).train()
    assert model.probes["pre_mm"][0].in_features == 2 * cfg.d_model
    hx, x0 = torch.randn(2, 3, 4, cfg.d_model), torch.randn(2, 3, 4, cfg.d_model)
    a = model.probe("pre_mm", hx, {}, x0)["snr_db"]
    b = model.probe("pre_mm", hx, {}, x0 + 1.0)["snr_db"]
    assert a.shape == (2, 3) and not torch.allclose(a, b)
    batch = {**random_batch("bf", k=3), "latent_panel_offset_deg": torch.full((2, 4), 15.0)}
    latent_losses(model(batch), batch).mean().backward()
    assert model.probes["bf"][0].weight.grad[:, cfg.d_model:].abs().sum() > 0


@pytest.mark.parametrize("mode, levels", [("input", False), ("branch", False), ("input", True), ("branch", True)])
def test_probe_fit_reads_the_precoding_map(mode: str, levels: bool):
    """With ``model.probe_fit`` the precoding probe also reads the fit's raw map (N_MAP numbers; "input": appended to
    the trunk's pooled tokens, "branch": through a second read-out whose output is added): the estimate moves with
    the earlier pairs' labels through the map even when the trunk's output is held fixed, and only tasks whose
    embedder has a fit get the extra inputs (with ``model.probe_levels`` N_LEVELS more)."""
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=True, probe_fit=mode, probe_levels=levels)
    n_in = N_MAP + N_LEVELS * levels
    model = build_model(cfg).eval()
    with torch.no_grad():                                               # the branch's output starts at zero
        for p in model.fit_probes.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    extra = n_in if mode == "input" else 0
    assert model.probes["pre_mm"].in_features == cfg.d_model + extra and model.probes["bf"].in_features == cfg.d_model
    assert sorted(model.fit_probes) == (["pre_mm", "pre_sr"] if mode == "branch" else [])
    batch = latent_batch("pre_mm", B=2, k=4, seed=0)
    other = {**batch, "lam_p": batch["lam_p"].roll(1, dims=-2)}        # the earlier pairs' labels, users permuted
    _, _, ctx = model.embedders["pre_mm"](batch)
    _, _, ctx_other = model.embedders["pre_mm"](other)
    assert ctx.probe_in.shape == (2, 5, n_in) and not torch.allclose(ctx.probe_in, ctx_other.probe_in)
    hx = torch.randn(2, 5, batch["h"].shape[-2], cfg.d_model)
    a = model.probe("pre_mm", hx, batch, fit=ctx.probe_in)["snr_db"]
    b = model.probe("pre_mm", hx, batch, fit=ctx_other.probe_in)["snr_db"]
    assert not torch.allclose(a[:, 1:], b[:, 1:])
    torch.testing.assert_close(a[:, 0], b[:, 0])                        # pair 0 has no earlier pairs: no fit
    with pytest.raises(ValueError, match="fit"):
        model.probe("pre_mm", hx, batch)


def test_probe_fit_branch_trains_on_the_probe_loss():
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=True, probe_fit="branch", probe_hidden=8)
    model = build_model(cfg).train()
    batch = latent_batch("pre_mm", B=2, k=4, seed=0)
    latent_losses(model(batch), batch).mean().backward()
    assert model.fit_probes["pre_mm"][1][-1].weight.grad.abs().sum() > 0     # the output layer: its input is live


def test_probe_fit_branch_standardises_its_inputs_by_training_statistics():
    """The branch's inputs are standardised per feature by the pooled statistics of the training batches so far,
    updated before use in training mode and frozen in evaluation: the same transform in both modes, never a batch's
    own statistics (after one batch they are that batch's; after two, each batch weighted equally)."""
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=True, probe_fit="branch")
    model = build_model(cfg).train()
    norm = model.fit_probes["pre_mm"][0]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 6, N_MAP, generator=g) * torch.linspace(0.05, 1.0, N_MAP) + 3.0
    z = norm(a).reshape(-1, N_MAP)
    torch.testing.assert_close(z.mean(0), torch.zeros(N_MAP), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(N_MAP), atol=0.01, rtol=0)   # eps 1e-5
    b = torch.randn(2, 3, N_MAP, generator=g) - 1.0
    norm(b)
    fa, fb = a.reshape(-1, N_MAP), b.reshape(-1, N_MAP)
    torch.testing.assert_close(norm.mean, (fa.mean(0) + fb.mean(0)) / 2)
    means = torch.stack((fa.mean(0), fb.mean(0)))
    within = (fa.var(0, unbiased=False) + fb.var(0, unbiased=False)) / 2
    torch.testing.assert_close(norm.var, within + means.var(0, unbiased=False))
    assert norm.count.item() == 2
    norm.eval()
    out = norm(b)
    torch.testing.assert_close(out, (b - norm.mean) / (norm.var + 1e-5).sqrt())
    assert norm.count.item() == 2                                       # evaluation does not update


def test_running_standardise_sees_features_constant_within_each_batch():
    """A feature constant within every batch (a sampler batch is one system: its stated nominal) but different across
    batches is scaled by its spread across them: nominal values 0, 10, 20 -> z-scores -1.22, 0, 1.22."""
    from icwm.model.icwm import RunningStandardise
    norm = RunningStandardise(1).train()
    for value in (0.0, 10.0, 20.0):
        norm(torch.full((4, 1), value))
    torch.testing.assert_close(norm.mean, torch.tensor([10.0]))
    torch.testing.assert_close(norm.var, torch.tensor([200.0 / 3]))
    z = norm.eval()(torch.tensor([[0.0], [10.0], [20.0]]))[:, 0]
    torch.testing.assert_close(z, torch.tensor([-10.0, 0.0, 10.0]) / (200.0 / 3) ** 0.5, atol=1e-3, rtol=0)


def test_running_standardise_is_bounded_after_degenerate_statistics():
    """A first batch without a fit (k = 0: every input 0, variance 0) must not blow up the next batch's inputs."""
    from icwm.model.icwm import RunningStandardise
    norm = RunningStandardise(3).train()
    norm(torch.zeros(5, 3))
    z = norm(torch.tensor([[1.0, -2.0, 0.5]]))
    assert z.abs().max() <= RunningStandardise.CLIP and torch.isfinite(z).all()


def test_probe_fit_branch_starts_adding_nothing():
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=True, probe_fit="branch", probe_hidden=8)
    model = build_model(cfg)
    fit = torch.randn(2, 3, N_MAP)
    assert model.fit_probes["pre_mm"](fit).abs().max() == 0


def test_probe_fit_without_a_fit_changes_nothing():
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=False, probe_fit="branch")
    model = build_model(cfg)
    assert model.probes["pre_mm"].in_features == cfg.d_model and len(model.fit_probes) == 0


def test_unknown_probe_fit_is_rejected():
    with pytest.raises(ValueError, match="probe_fit"):
        dataclasses.replace(ModelConfig.flavour("debug"), probe_fit="yes")


def test_negative_probe_hidden_is_rejected():
    with pytest.raises(ValueError, match="probe_hidden"):
        dataclasses.replace(ModelConfig.flavour("debug"), probe_hidden=-1)


def test_probe_fit_branch_statistics_survive_a_checkpoint(tmp_path):
    """The branch's running statistics are state (buffers): saved with the weights and loaded back."""
    from icwm.infer import FewShotModel, save_pretrained
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), precoding_fit=True, probe_fit="branch")
    model = build_model(cfg).train()
    model(latent_batch("pre_mm", B=2, k=4, seed=0))                    # moves the running statistics
    running = model.fit_probes["pre_mm"][0].mean.clone()
    assert running.abs().max() > 0
    loaded = FewShotModel.from_pretrained(save_pretrained(model, cfg, tmp_path / "m")).model
    torch.testing.assert_close(loaded.fit_probes["pre_mm"][0].mean, running)


def test_probe_levels_without_probe_fit_is_rejected():
    with pytest.raises(ValueError, match="probe_levels"):
        dataclasses.replace(ModelConfig.flavour("debug"), probe_levels=True)


def test_binned_bf_probe_is_the_softmax_mean_of_its_offsets_and_trains():
    """``model.bf_probe_bins``: bf's probe outputs logits over offsets evenly over +- span from the nominal; its
    estimate is their softmax-weighted mean (0 untrained, inside the span always, the offset of a bin whose logit
    dominates), and the probe loss trains it with the trunk. Other tasks keep the regression."""
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), bf_probe_bins=7, bf_offset_span_deg=30.0, probe_hidden=8,
                              nominal=True)
    model = build_model(cfg).train()
    probe = model.probes["bf"]
    torch.testing.assert_close(probe.centres * 20.0, torch.linspace(-30.0, 30.0, 7))      # LATENT_SCALES units
    assert isinstance(model.probes["pe"], torch.nn.Sequential)
    hx = torch.randn(2, 3, 4, cfg.d_model)
    assert torch.equal(probe.read[-1].bias, torch.zeros(7))
    with torch.no_grad():
        w = probe.read[-1].weight.clone()
        probe.read[-1].weight.zero_()                                    # equal logits: the centres' mean, 0
        torch.testing.assert_close(model.probe("bf", hx, {})["panel_offset_deg"], torch.zeros(2, 3), atol=1e-5, rtol=0)
        probe.read[-1].bias.copy_(torch.tensor([0.0, 0, 0, 0, 0, 40.0, 0]))                # bin 5: +20 deg
        probe.read[-1].weight.copy_(1e3 * w)
    est = model.probe("bf", hx, {"prior_panel_offset_deg": torch.full((2, 1), 5.0)})["panel_offset_deg"]
    assert (est - 5.0).abs().max() <= 30.0 + 1e-4 and not torch.allclose(est, est[0, 0])   # nominal + [-30, 30]
    with torch.no_grad():
        probe.read[-1].weight.zero_()
    est = model.probe("bf", hx, {"prior_panel_offset_deg": torch.full((2, 1), 5.0)})["panel_offset_deg"]
    torch.testing.assert_close(est, torch.full((2, 3), 25.0), atol=1e-3, rtol=0)
    model = build_model(cfg).train()
    batch = {**random_batch("bf", k=3), "latent_panel_offset_deg": torch.full((2, 4), 15.0)}
    latent_losses(model(batch), batch).mean().backward()
    assert model.probes["bf"].read[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters() if p.dim() > 1)


def test_bf_probe_bins_rejects_one_bin():
    with pytest.raises(ValueError, match="bf_probe_bins"):
        ModelConfig.flavour("debug", bf_probe_bins=1)


def test_bf_density_kernel_reads_the_mode_of_the_demonstrations_offsets_locally():
    """``model.bf_density_kernel``: the binned probe's logits add exp(gain) * kernel * log density. A constant
    log density (k = 0) changes nothing; at the initial kernel (identity) and a large gain the estimate is the
    density's mode, and far (outlier) density does not move it; the probe loss trains kernel and gain."""
    cfg = dataclasses.replace(ModelConfig.flavour("debug"), bf_probe_bins=31, bf_offset_span_deg=30.0, probe_hidden=8,
                              bf_density_kernel=5)
    model = build_model(cfg).train()
    probe = model.probes["bf"]
    plain = build_model(dataclasses.replace(cfg, bf_density_kernel=0)).probes["bf"]
    plain.load_state_dict({k: v for k, v in probe.state_dict().items() if k.startswith(("read", "centres"))})
    hx = torch.randn(2, 3, cfg.d_model)
    torch.testing.assert_close(probe(hx, torch.zeros(2, 3, 31)), plain(hx))            # k = 0: no density
    torch.testing.assert_close(probe(hx, torch.full((2, 3, 31), 0.3)), plain(hx))      # any constant density
    from icwm.model.sub6 import DENSITY_FLOOR, offset_bank
    main = offset_bank(torch.tensor([8.0] * 6 + [-25.0] * 3), 31, 30.0).mean(0)        # mode +8, outliers at -25
    main = torch.log(main + DENSITY_FLOOR)
    with torch.no_grad():
        probe.gain.fill_(3.0)
    est = 20.0 * probe(hx, main.expand(2, 3, 31))[..., 0]                              # LATENT_SCALES units -> deg
    assert (est - 8.0).abs().max() < 1.0
    with pytest.raises(ValueError, match="density"):
        probe(hx)
    batch = {**random_batch("bf", k=3), "latent_panel_offset_deg": torch.full((2, 4), 15.0)}
    latent_losses(model(batch), batch).mean().backward()
    assert probe.kernel.grad.abs().sum() > 0 and probe.gain.grad.abs().sum() > 0
    assert all(p.dim() >= 1 for p in model.parameters())          # DeepSpeed's broadcast views each as bytes
