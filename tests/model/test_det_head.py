"""det (icwm/model/detection.py): the head is first guess + correction. Given form: the first guess is EP with the
given channel and SNR. Latent form (no h, no SNR): the in-context ridge fit of the demonstrations' symbols on their
received samples, which recovers a noiseless linear channel's symbols, tends to the LMMSE equaliser with noise, is
block causal, and is zero without ``cfg.icr``; with ``det_fit="channel"`` EP at the fitted channel and residual
noise, which is the classical in-context detector (``icwm.tasks.det.in_context_detect``) at a vanishing ridge."""
from __future__ import annotations

import math

import pytest
import torch

from icwm.model import ModelConfig, build_model
from icwm.model.detection import NOISE_FLOOR
from icwm.model.icr import prefix_residual_power
from icwm.tasks.det import in_context_detect
from icwm.wireless.detection import ep_detect, lmmse_detect, noise_var_from_snr
from model_batches import random_batch


def _silent(cfg: ModelConfig) -> torch.nn.Module:
    """A model whose det correction is zero: its prediction is the first guess."""
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.heads["det"].out.weight.zero_()
        model.heads["det"].out.bias.zero_()
    return model


def _cn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.view_as_complex(torch.randn(*shape, 2, generator=g) * 0.5 ** 0.5)


def _linear_episode(b: int = 3, p: int = 9, s: int = 4, r: int = 5, k: int = 3, noise_var: float = 0.0,
                    seed: int = 0) -> dict:
    """Latent-form det episodes: one channel H [R, K] per episode, y = x H^T (+ noise) for every pair."""
    g = torch.Generator().manual_seed(seed)
    h = _cn(b, 1, r, k, g=g)
    x = _cn(b, p, s, k, g=g)
    y = x @ h.transpose(-1, -2) + math.sqrt(noise_var) * _cn(b, p, s, r, g=g)
    return {"task": "det", "k": p - 1, "y": y, "x": x, "h_true": h.expand(b, p, r, k)}


def test_given_form_first_guess_is_ep_with_the_given_channel():
    model = _silent(ModelConfig.flavour("debug"))
    batch = random_batch("det", K=3, R=5, S=4, k=2)
    with torch.no_grad():
        pred = model(batch)["x"]                                        # [B, P, S, K]
    ref = ep_detect(batch["h"], batch["y"], noise_var_from_snr(batch["snr_db"], 3))[0]
    torch.testing.assert_close(pred, ref.to(torch.complex64), rtol=1e-4, atol=1e-4)


def test_latent_first_guess_recovers_a_noiseless_linear_channel():
    """y = x H^T (R = 5 >= K = 3): y spans a K-dim subspace, so once the demonstrations hold K samples (two of
    two slots) the ridge fit is x itself (up to the tiny ridge); one demonstration (2 samples) cannot pin it."""
    ep = _linear_episode(s=2)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    model = _silent(ModelConfig.flavour("debug", icr_n0=1e-9))
    with torch.no_grad():
        guess = model.embedders["det"].first_guess(batch)[0]
        pred = model(batch)["x"]
    torch.testing.assert_close(pred, guess)                              # head = first guess + (zero) correction
    err = (guess - ep["x"]).abs().pow(2).sum((-1, -2)) / ep["x"].abs().pow(2).sum((-1, -2))   # [B, P]
    assert err[:, 2:].max() < 1e-6, err
    assert torch.equal(guess[:, 0], torch.zeros_like(guess[:, 0]))       # k = 0: nothing to fit
    assert err[:, 1].min() > 1e-3                                        # 2 samples, 3 users
    assert (guess[:, -1] - ep["x"][:, -1]).abs().max() < 1e-3           # the query's symbols


@pytest.mark.parametrize("fit", ["equaliser", "channel"])
def test_latent_first_guess_ignores_the_query_label_and_later_pairs(fit: str):
    ep = _linear_episode(seed=1, noise_var=0.01)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    emb = build_model(ModelConfig.flavour("debug", det_fit=fit)).embedders["det"]
    with torch.no_grad():
        ref = emb.first_guess(batch)[0]
        x2, y2 = batch["x"].clone(), batch["y"].clone()
        x2[:, 4:] = 0.0                                                  # labels of pairs >= 4 (the query's: zeros)
        y2[:, 5:] *= -2.0
        out = emb.first_guess({**batch, "x": x2, "y": y2})[0]
    torch.testing.assert_close(out[:, :5], ref[:, :5], rtol=0, atol=0)
    assert (out[:, 5:] - ref[:, 5:]).abs().max() > 1e-3


@pytest.mark.parametrize("fit", ["equaliser", "channel"])
def test_latent_first_guess_is_user_permutation_equivariant(fit: str):
    ep = _linear_episode(k=4, seed=2, noise_var=0.01)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    perm = torch.tensor([2, 0, 3, 1])
    model = _silent(ModelConfig.flavour("debug", det_fit=fit))
    with torch.no_grad():
        ref = model(batch)["x"]
        out = model({**batch, "x": batch["x"][..., perm]})["x"]
    torch.testing.assert_close(out, ref[..., perm], rtol=1e-5, atol=1e-5)


def test_latent_first_guess_tends_to_the_lmmse_equaliser():
    """Unit-power symbols, noise variance s2: the ridge fit of x on y over many demonstrations estimates
    E[x y^H] E[y y^H]^-1 = (H^H H + s2 I)^-1 H^H; the query's error is close to the LMMSE detector's with the true H."""
    s2 = 0.1
    ep = _linear_episode(b=16, p=17, s=16, r=4, k=2, noise_var=s2, seed=3)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    with torch.no_grad():
        guess = build_model(ModelConfig.flavour("debug")).embedders["det"].first_guess(batch)[0][:, -1]
    lmmse = lmmse_detect(ep["h_true"][:, -1], ep["y"][:, -1], s2, unbiased=False)[0]
    mse = lambda z: float((z - ep["x"][:, -1]).abs().pow(2).mean())   # noqa: E731
    assert mse(guess) < 1.1 * mse(lmmse), (mse(guess), mse(lmmse))
    assert mse(guess) < 0.1 * mse(torch.zeros_like(guess))


@pytest.mark.parametrize("fit", ["equaliser", "channel"])
@pytest.mark.parametrize("icr", [False, True])
def test_without_icr_the_latent_first_guess_is_zero(icr: bool, fit: str):
    ep = _linear_episode(seed=4)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    model = _silent(ModelConfig.flavour("debug", icr=icr, det_fit=fit))
    assert (model.embedders["det"].icr is not None) == icr
    with torch.no_grad():
        pred = model(batch)["x"]
    assert pred.shape == ep["x"].shape and torch.isfinite(torch.view_as_real(pred)).all()
    assert (pred.abs().max() == 0) != icr


def test_channel_fit_first_guess_is_the_classical_in_context_detector():
    """det_fit = "channel", vanishing ridge: pair p's first guess is EP at the LS channel and the unbiased noise
    estimate of pairs < p, i.e. ``in_context_detect`` run on the episode cut after pair p; k = 0 gives zeros."""
    s2 = 0.05
    ep = _linear_episode(b=4, p=6, s=4, r=4, k=2, noise_var=s2, seed=5)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    model = _silent(ModelConfig.flavour("debug", icr_n0=1e-9, det_fit="channel"))
    with torch.no_grad():
        guess, h_hat = model.embedders["det"].first_guess(batch)
        pred = model(batch)["x"]
    torch.testing.assert_close(pred, guess)
    assert torch.equal(guess[:, 0], torch.zeros_like(guess[:, 0]))
    for p in range(1, 6):
        ref = in_context_detect(ep["y"][:, : p + 1], ep["x"][:, : p + 1])[:, 0]          # [B, S, K]
        torch.testing.assert_close(guess[:, p], ref.to(guess.dtype), rtol=0, atol=2e-3)
    err = (h_hat[:, -1] - ep["h_true"][:, -1]).abs().pow(2).sum() / ep["h_true"][:, -1].abs().pow(2).sum()
    assert err < 0.05, float(err)


def test_channel_fit_detects_better_than_the_equaliser_fit():
    """16-QAM symbols through a 4 x 4 channel at 15 dB: EP at the fitted channel beats the linear equaliser fit on
    symbol errors at the query once the demonstrations pin the channel."""
    g = torch.Generator().manual_seed(6)
    const = torch.tensor([complex(a, b) for a in (-3, -1, 1, 3) for b in (-3, -1, 1, 3)]) / math.sqrt(10.0)
    b, p, s, r, k = 32, 9, 8, 4, 4
    x = const[torch.randint(0, 16, (b, p, s, k), generator=g)].to(torch.complex64)
    h = _cn(b, 1, r, k, g=g)
    nv = k * 10 ** (-1.5)
    y = x @ h.transpose(-1, -2) + math.sqrt(nv) * _cn(b, p, s, r, g=g)
    batch = {"task": "det", "k": p - 1, "y": y, "x": x}
    guesses = {"true channel": ep_detect(h[:, 0], y[:, -1], nv)[0]}
    for fit in ("equaliser", "channel"):
        with torch.no_grad():
            guess = _silent(ModelConfig.flavour("debug", det_fit=fit)).embedders["det"].first_guess(batch)[0]
        guesses[fit] = guess[:, -1]
    ser = {m: float((const[(z[..., None] - const).abs().argmin(-1)] != x[:, -1]).float().mean())
           for m, z in guesses.items()}
    assert ser["channel"] < 0.8 * ser["equaliser"], ser
    assert ser["channel"] < 1.3 * ser["true channel"], ser


def test_channel_fit_grad_keeps_eps_value_and_gives_the_ridge_lmmses_slope():
    """det_fit_grad: the first guess is EP's value exactly; without the option it carries no gradient to the fit's
    ridge, with it the gradient of LMMSE (biased) at the fitted channel and residual noise, pair 0 excluded."""
    ep = _linear_episode(s=4, noise_var=0.3, seed=3)
    batch = {key: v for key, v in ep.items() if key != "h_true"}
    plain = build_model(ModelConfig.flavour("debug", det_fit="channel")).embedders["det"]
    assert not plain.first_guess(batch)[0].requires_grad
    emb = build_model(ModelConfig.flavour("debug", det_fit="channel", det_fit_grad=True)).embedders["det"]
    emb.load_state_dict(plain.state_dict())
    guess = emb.first_guess(batch)[0]
    with torch.no_grad():
        torch.testing.assert_close(guess, plain.first_guess(batch)[0], rtol=0, atol=0)
    resid = (guess - batch["x"]).detach()
    (guess.conj() * resid).real.sum().backward()
    x_u, y_u = batch["x"][:, :, None].to(torch.complex64), batch["y"][:, :, None].to(torch.complex64)
    icr = plain.icr
    maps = icr.maps(x_u, y_u, own_power=False)
    noise = prefix_residual_power(x_u, y_u, maps)[:, :, 0].clamp_min(NOISE_FLOOR)
    lin = lmmse_detect(maps[:, :, 0], batch["y"], noise, unbiased=False)[0][:, 1:]
    (lin.conj() * resid[:, 1:]).real.sum().backward()
    assert float(icr.log_n0.grad.abs()) > 0.0
    for name in ("log_n0", "slope"):
        torch.testing.assert_close(getattr(emb.icr, name).grad, getattr(icr, name).grad, rtol=1e-4, atol=1e-7)
