"""Cached demonstrations (``icwm.model.cache``): answering queries against encoded demonstrations equals the forward
pass on each full episode at its query pair, for every task, both forms and k = 0, 1, 5."""
from __future__ import annotations

import pytest
import torch

from icwm import tasks
from icwm.model import ModelConfig, build_model
from icwm.model.cache import answer_queries, encode_demos
from icwm.model.icwm import probe_latents
from model_batches import latent_batch, random_batch, split_for_cache

Q = 3
FORMS = [(t, form) for t in tasks.TASKS for form in ("given", "latent") if form == "given" or tasks.spec(t).latent_x]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A debug model with every parameter perturbed (zero-initialised layers too, so every path is live)."""
    torch.manual_seed(0)
    m = build_model(ModelConfig.flavour("debug", precoding_fit=True)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def _assert_cached_equals_forward(m: torch.nn.Module, batch: dict, label: str) -> None:
    """Every output of the cached path (episode 0's demonstrations, then each query) equals the forward pass."""
    demos, queries, full = split_for_cache(batch)
    with torch.no_grad():
        ref = {key: v[:, -1] for key, v in m(full).items()}
        out = answer_queries(m, encode_demos(m, demos), queries)
    for key, v in ref.items():
        torch.testing.assert_close(out[key], v, rtol=1e-5, atol=1e-5, msg=lambda msg: f"{label} {key}: {msg}")


@pytest.mark.parametrize("k", [0, 1, 5])
@pytest.mark.parametrize("task,form", FORMS)
def test_cached_queries_equal_the_forward_pass(model, task: str, form: str, k: int):
    make = latent_batch if form == "latent" else random_batch
    demos, queries, full = split_for_cache(make(task, B=Q, k=k, seed=k))
    with torch.no_grad():
        ref = {key: v[:, -1] for key, v in model(full).items()}
        out = answer_queries(model, encode_demos(model, demos), queries)
    assert set(out) == set(ref)
    for key, v in ref.items():
        assert out[key].shape == v.shape and out[key].dtype == v.dtype, key
        torch.testing.assert_close(out[key], v, rtol=1e-5, atol=1e-5, msg=lambda m: f"{task} {form} {key}: {m}")


@pytest.mark.parametrize("option", [{"probe_skip": True}, {"probe_fit": "input"}, {"probe_fit": "branch"},
                                    {"probe_fit": "branch", "nominal": True},
                                    {"probe_fit": "input", "probe_levels": True},
                                    {"probe_fit": "branch", "probe_levels": True, "nominal": True},
                                    {"bf_offset_bins": 31, "bf_probe_bins": 31, "nominal": True},
                                    {"nominal": True, "probe_k0_nominal": ("pre_sr", "pre_mm", "bf", "de", "pe")}])
@pytest.mark.parametrize("k", [0, 5])
@pytest.mark.parametrize("task", [t for t, form in FORMS if form == "latent" and probe_latents(t)])
def test_cached_queries_equal_the_forward_pass_with_probe_options(task: str, k: int, option: dict):
    """``model.probe_skip``: the probe also reads the pre-trunk x-tokens, the demonstrations' taken from the cache;
    ``model.probe_fit``: it also reads the in-context fit's raw map (precoding), from the head context (with
    ``model.probe_levels`` also the pair's channel levels); ``model.bf_offset_bins``: bf's label tokens carry the
    pair's implied offset (and with ``model.bf_probe_bins`` its probe is a distribution over offsets);
    ``model.probe_k0_nominal``: only a query with no demonstrations states the nominal."""
    torch.manual_seed(0)
    m = build_model(ModelConfig.flavour("debug", precoding_fit=True, **option)).eval()
    _assert_cached_equals_forward(m, latent_batch(task, B=Q, k=k, seed=k), task)


@pytest.mark.parametrize("k", [0, 5])
@pytest.mark.parametrize("option", [{"bf_offset_bins": 31, "bf_probe_bins": 31},
                                    {"bf_offset_bins": 31, "bf_probe_bins": 31, "bf_density_kernel": 5},
                                    {"bf_probe_bins": 31, "bf_density_kernel": 5, "bf_density_form": "loglik"}])
def test_cached_bf_queries_equal_the_forward_pass_with_offset_options(k: int, option: dict):
    """bf's offset options: the label bank, the binned probe, and with ``model.bf_density_kernel`` the probe's read of
    the demonstrations' offset density (the query's context pools the cached demonstrations' labels)."""
    torch.manual_seed(0)
    m = build_model(ModelConfig.flavour("debug", nominal=True, probe_hidden=8, **option)).eval()
    with torch.no_grad():
        m.probes["bf"].read[-1].weight.mul_(0.1)           # a density that matters beside the regression's logits
    _assert_cached_equals_forward(m, random_batch("bf", B=Q, k=k, seed=k), "bf")


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("task,form", [(t, f) for t, f in FORMS if t in ("ce", "cp", "pf")])
def test_cached_grid_queries_equal_the_forward_pass_with_the_residual_ridge(task: str, form: str, k: int):
    """``model.icr_residual_ridge``: the fit's ridge scales with the demonstrations' own residual, which the cached
    path computes from the cached states as the forward pass does (the exponents set away from 0 so it matters)."""
    torch.manual_seed(0)
    m = build_model(ModelConfig.flavour("debug", icr_residual_ridge=("ce", "cp", "pf"))).eval()
    with torch.no_grad():
        m.heads[task].fit.icr.resid_w.fill_(1.5)
    make = latent_batch if form == "latent" else random_batch
    _assert_cached_equals_forward(m, make(task, B=Q, k=k, seed=k), f"{task} {form}")


def test_cached_queries_depend_on_the_demonstrations(model):
    """The cache carries information: other demonstrations give other answers (the test above can fail)."""
    demos, queries, _ = split_for_cache(random_batch("cp", B=Q, k=3, seed=0))
    other, _, _ = split_for_cache(random_batch("cp", B=Q, k=3, seed=1))
    with torch.no_grad():
        a = answer_queries(model, encode_demos(model, demos), queries)["h_fut"]
        b = answer_queries(model, encode_demos(model, other), queries)["h_fut"]
    assert (a - b).abs().max() > 1e-3


def test_cache_rejects_mismatched_inputs(model):
    demos, queries, _ = split_for_cache(random_batch("pre_sr", B=Q, k=2, K=3, N=8))
    cache = encode_demos(model, demos)
    with pytest.raises(ValueError, match="queries\\['task'\\]"):
        answer_queries(model, cache, {**queries, "task": "pre_mm"})
    with pytest.raises(ValueError, match="queries\\['h'\\]: expected per-sample shape"):
        answer_queries(model, cache, {**queries, "h": queries["h"][..., :6]})
    with pytest.raises(ValueError, match="queries: expected the demonstrations' keys"):
        answer_queries(model, cache, {key: v for key, v in queries.items() if key != "snr_db"})
    with pytest.raises(ValueError, match="demos\\['h'\\]: expected shape \\[1, k=2"):
        encode_demos(model, {**demos, "h": demos["h"].expand(2, -1, -1, -1)})
    with pytest.raises(ValueError, match="demos\\['k'\\]"):
        encode_demos(model, {**demos, "k": model.cfg.k_max + 1})
