"""The latent form of every task (docs/contracts.md "Latent form", ../shared/ICL.md): fields, shared theta, the three
baselines, and that no baseline reads what it must not (the query's label; theta except the oracle)."""
import dataclasses

import pytest
import torch

from icwm import tasks
from icwm.tasks.common import LATENT_METHODS, LATENT_PREFIX, ORACLE_PREFIX, PRIOR_PREFIX, is_latent
from icwm.wireless.sysconfig import LatentConfig
from tests.tasks.test_tasks import tiny_cfg

G, S = 2, 4   # episodes, pairs (3 demos + the query)


def latent_cfg():
    return tiny_cfg(form="latent", snr_db=[0.0, 20.0], latent=LatentConfig(oracle_snapshots=24))


@pytest.fixture(scope="module")
def samples():
    cfg = latent_cfg()
    return {t: tasks.get(t).generate(cfg, G, S, torch.Generator().manual_seed(10 + i))
            for i, t in enumerate(tasks.TASKS)}


def _perturb(x: torch.Tensor) -> torch.Tensor:
    if x.dtype in (torch.int64, torch.bool):
        return (x + 1) % 16 if x.dtype == torch.int64 else ~x
    return x * 1.7 + (0.5 + 0.5j if x.is_complex() else 0.5)


def _query_preds(out: dict) -> dict:
    return {(m, key): torch.nan_to_num(v[:, -1].float() if not v.is_complex() else v[:, -1])
            for m, pred in out.items() for key, v in pred.items()}


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_latent_fields(samples, task_id):
    mod = tasks.get(task_id)
    s = samples[task_id]
    assert is_latent(s)
    hidden = set(mod.LATENT_X)
    assert hidden <= set(mod.X_KEYS) and not hidden & set(s), "omitted inputs must be absent"
    assert set(tasks.x_keys(mod, s)) == set(mod.X_KEYS) - hidden
    latents = [k for k in s if k.startswith(LATENT_PREFIX)]
    assert latents
    for key in latents + [k for k in s if k.startswith(PRIOR_PREFIX)]:
        v = s[key]
        assert torch.equal(v, v[:, :1].expand_as(v)), f"{key} must be shared by the pairs of an episode"


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_latent_baselines_and_k0_in_context_is_blind(samples, task_id):
    mod = tasks.get(task_id)
    s = samples[task_id]
    out = mod.baselines(s)
    assert set(LATENT_METHODS) <= set(out)
    q = {key: v[:, -1] for key, v in s.items()}
    for method, pred in out.items():
        for name, v in mod.metric({key: t[:, -1] for key, t in pred.items()}, q).items():
            assert torch.isfinite(v).all(), (method, name)
    k0 = mod.baselines({key: v[:, -1:] for key, v in s.items()})
    for key in k0["blind"]:
        assert torch.equal(torch.nan_to_num(k0["in_context"][key]), torch.nan_to_num(k0["blind"][key])), key


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_latent_baselines_read_neither_the_query_label_nor_theta(samples, task_id):
    """Changing the query's labels changes no baseline's query prediction; changing theta (latent_*, oracle_*)
    changes none but the oracles' (methods named oracle*)."""
    mod = tasks.get(task_id)
    s = samples[task_id]
    ref = _query_preds(mod.baselines(s))
    label = dict(s)
    for key in mod.Y_KEYS + tuple(k for k in s if k in ("x_idx", "beam_gain")):
        y = s[key].clone()
        y[:, -1] = _perturb(y[:, -1])
        label[key] = y
    for k, v in _query_preds(mod.baselines(label)).items():
        assert torch.equal(v, ref[k]), ("query label read by", k)
    theta = {k: (_perturb(v) if k.startswith((LATENT_PREFIX, ORACLE_PREFIX)) else v) for k, v in s.items()}
    for k, v in _query_preds(mod.baselines(theta)).items():
        if not k[0].startswith("oracle"):    # oracle, oracle_ml: told theta
            assert torch.equal(v, ref[k]), ("theta read by", k)


def test_given_form_is_the_default_and_unchanged():
    cfg = tiny_cfg()
    assert cfg.form == "given" and dataclasses.replace(cfg, form="latent").form == "latent"
    for t in tasks.TASKS:
        s = tasks.get(t).generate(cfg, 1, 2, torch.Generator().manual_seed(0))
        assert not is_latent(s) and set(tasks.get(t).X_KEYS) <= set(s), t


def test_data_config_without_oracle_writes_no_oracle_fields():
    """``oracle: false`` (pretraining data) sets latent.oracle_snapshots to 0: no oracle field, no oracle method."""
    from icwm.data.config import DataConfig
    cfg = DataConfig(tasks=["ce"], systems=[latent_cfg()], oracle=False)
    system = cfg.systems_for("ce")[0]
    assert system.latent.oracle_snapshots == 0 and DataConfig(tasks=["ce"], systems=[latent_cfg()]).oracle
    s = tasks.get("ce").generate(system, 1, 3, torch.Generator().manual_seed(0))
    assert is_latent(s) and not any(k.startswith(ORACLE_PREFIX) for k in s)
    assert set(tasks.get("ce").baselines(s)) >= {"blind", "in_context"} and "oracle" not in tasks.get("ce").baselines(s)


def test_bench_latent_quick_rows():
    from icwm.bench import latent
    rows = latent.run(quick=True)
    names = [r["name"].split(" (")[0] for r in rows]
    assert names == ["given de", "latent de", "given pe", "latent pe"]
    for given, lat in zip(rows[::2], rows[1::2]):
        assert given["value"] > 0 and lat["ratio_to_given"] == pytest.approx(lat["value"] / given["value"])
