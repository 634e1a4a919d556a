"""ICL efficiency (icwm.eval.eta) against closed forms and Monte Carlo, and the runner / report / plot on a fake
latent task whose demonstrations teach the episode's slope."""
from __future__ import annotations

import math
import types

import pytest
import torch

import icwm.tasks
from icwm.eval import eta as E
from icwm.eval import report as rep
from icwm.eval.config import EvalConfig
from icwm.eval.plots import plot_all
from icwm.eval.runner import ALL, MODEL, run
from icwm.tasks.common import latent_fields
from icwm.wireless.sysconfig import SystemConfig


def test_eta_is_the_fraction_of_the_gap_closed():
    g = torch.Generator().manual_seed(0)
    blind = torch.rand(400, generator=g) + 1.0
    oracle = blind + 2.0 + 0.1 * torch.randn(400, generator=g)
    e = E.eta(blind + 0.25 * (oracle - blind), blind, oracle)
    assert e.eta == pytest.approx(0.25, abs=1e-6) and e.eta_se < 1e-6     # exact per query: no sampling error
    assert e.gap == pytest.approx(float((oracle - blind).mean()), rel=1e-6) and e.teaches
    assert E.eta(oracle, blind, oracle).eta == pytest.approx(1.0) and E.eta(blind, blind, oracle).eta == 0.0


def test_eta_in_db_of_the_mean():
    """NMSE: blind 1 (0 dB), oracle 0.01 (-20 dB), method 0.1 (-10 dB) -> eta 0.5 in the dB scale."""
    n = 50
    e = E.eta(torch.full((n,), 0.1), torch.ones(n), torch.full((n,), 0.01), scale="db")
    assert e.eta == pytest.approx(0.5) and e.gap == pytest.approx(-20.0)


def test_no_gap_means_nothing_to_teach():
    g = torch.Generator().manual_seed(1)
    blind = torch.randn(200, generator=g)
    oracle = blind + 0.01 * torch.randn(200, generator=g)          # gap ~ 0 within its sampling error
    e = E.eta(blind + 0.5, blind, oracle)
    assert not e.teaches and math.isnan(e.eta)


def test_eta_standard_error_matches_monte_carlo():
    """The delta-method SE of eta (dB scale, noisy per-query values) is within 25 % of the spread over replicates."""
    g = torch.Generator().manual_seed(2)
    etas, ses = [], []
    for _ in range(300):
        blind = 1.0 + 0.3 * torch.rand(64, generator=g)
        oracle = blind * 0.05 * (1 + torch.rand(64, generator=g))
        method = blind * 0.2 * (1 + torch.rand(64, generator=g))
        e = E.eta(method, blind, oracle, scale="db")
        etas.append(e.eta)
        ses.append(e.eta_se)
    spread, mean_se = torch.tensor(etas).std().item(), sum(ses) / len(ses)
    assert mean_se == pytest.approx(spread, rel=0.25)


def latent_task(task_id: str) -> types.ModuleType:
    """y = c x + noise with the slope c drawn per episode: given form x = (x, c); latent form omits c."""
    m = types.ModuleType(f"fake_latent_{task_id}")
    m.ID, m.X_KEYS, m.Y_KEYS, m.LATENT_X = task_id, ("x", "c"), ("y",), ("c",)

    def generate(cfg, n_groups, n_per_group, rng):
        x = torch.randn(n_groups, n_per_group, generator=rng) + 3.0
        c = (torch.rand(n_groups, 1, generator=rng) * 4.0 + 1.0).expand(n_groups, n_per_group)
        y = c * x + 0.3 * torch.randn(n_groups, n_per_group, generator=rng)
        extra = {"small": torch.zeros(n_groups, n_per_group)} if cfg.num_users == 2 else {}
        return {"x": x, "y": y, **extra, **latent_fields("c", c.contiguous(), [1.0, 5.0])}

    def metric(pred, sample):
        return {"nmse": (pred["y"] - sample["y"]).pow(2) / sample["y"].pow(2)}

    def baselines(sample):
        x, y = sample["x"], sample["y"]
        k = x.shape[1] - 1
        slope = ((x[:, :k] * y[:, :k]).sum(1) / x[:, :k].pow(2).sum(1))[:, None] if k else sample["prior_c"]
        out = {"oracle": {"y": sample["latent_c"] * x}, "blind": {"y": sample["prior_c"] * x},
               "in_context": {"y": slope * x}}
        if "small" in sample:                  # a method some systems do not have (as det's exhaustive search)
            out["partial"] = {"y": sample["latent_c"] * x}
        return out

    m.generate, m.metric, m.baselines = generate, metric, baselines
    return m


class LatentModel(torch.nn.Module):
    """Reads the latent form as it is (no ``c``, no truth ``latent_*``; the stated nominal ``prior_c`` is there, as
    blind has it): answers with its own guess of c, the centre of the latent range (as a trained model would) at
    k = 0 and the demos' LS slope after; like ``ICWM`` it also outputs its estimate ``latent_hat_c`` [B, k+1]."""

    def __init__(self, task_id: str):
        super().__init__()
        self.cfg = types.SimpleNamespace(k_max=16, tasks=(task_id,))

    def forward(self, batch):
        assert "c" not in batch and not any(key.startswith("latent_") for key in batch) and "prior_c" in batch
        x, y, k = batch["x"], batch["y"], batch["k"]
        c = (x[:, :k] * y[:, :k]).sum(1, keepdim=True) / x[:, :k].pow(2).sum(1, keepdim=True) if k else 3.0
        c = torch.as_tensor(c).expand_as(x)
        return {"y": c * x, "latent_hat_c": c}


def test_runner_scores_latent_episodes_against_oracle_and_blind(monkeypatch, tmp_path):
    monkeypatch.setattr(icwm.tasks, "get", lambda t: latent_task(t))
    cfg = EvalConfig(model="none", tasks=["cp"], ks=[0, 1, 4, 16], families=["latent"], episodes=64,
                     batch_size=32, seed=3, device="cpu")
    systems = [SystemConfig(name="l1"), SystemConfig(name="l2", num_users=2)]
    res = run(cfg, LatentModel("cp"), {"latent": systems}, progress=False)
    val = {(r["method"], r["k"], r["metric"]): r["value"] for r in res.rows if r["system"] == ALL}
    for k in (0, 1, 4, 16):                       # every method at every k; oracle and blind do not move with k
        assert val[("oracle", k, "nmse")] == val[("oracle", 0, "nmse")]
        assert val[("blind", k, "nmse")] == val[("blind", 0, "nmse")]
    assert val[(MODEL, 0, "eta")] == pytest.approx(0.0, abs=1e-9)     # k = 0: its guess is the prior = blind
    assert val[("in_context", 0, "eta")] == pytest.approx(0.0, abs=1e-9)
    assert 0.5 < val[("in_context", 1, "eta")] < val[("in_context", 16, "eta")] <= 1.05
    assert val[("oracle", 0, "gap")] < -3.0 * val[("oracle", 0, "gap_se")]   # dB: the oracle's NMSE is lower
    assert ("partial", 4, "eta") not in val                # not on every pooled system: no pooled eta ...
    assert any(r["method"] == "partial" and r["metric"] == "eta" and r["system"] == "l2" for r in res.rows)  # ... own
    text = rep.markdown(res, [])
    assert "ICL efficiency, latent: oracle" in text and "| in_context |" in text
    assert [p.name for p in plot_all(res, tmp_path)] == ["cp.png"] and (tmp_path / "cp.png").stat().st_size > 0
