"""ICL vs test-time fine-tuning (icwm.compare.ttft): every episode's fine-tune starts from the trained adapter and
leaves it as it was, reads only the k demonstration pairs (never the query's label, never theta), lowers their loss
and stops by patience or at the step cap; the latent form's omitted inputs are filled as documented; the variant is
picked on the seen family; the debug comparison writes ttft.csv (native, <variant>+ttft, the latent baselines at each
k, eta rows, positive costs) and its report section; a rerun reuses each system's cached results, whose key follows the
episodes, settings and weights."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapters_llm.early_stop import STOP_CAP, STOP_PATIENCE
from adapters_llm.model import build_model, sample_shapes
from icwm import tasks as task_registry
from icwm.compare import llm as L
from icwm.compare import ttft as TT
from icwm.compare.config import CompareConfig
from icwm.compare.run import run
from icwm.config import load_config
from icwm.data.config import load_family
from icwm.eval import runner

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "configs" / "compare" / "debug.yaml"
LATENT = ROOT / "configs" / "systems" / "debug_latent_unseen.yaml"
SMALL = ("tasks=[cp]", "sweeps=[]", "single_task.enabled=false", "llm.adapters=[lora]", "llm.n_shots=[]")


def _cfg(task: str, *overrides: str) -> CompareConfig:
    return load_config(CompareConfig, DEBUG, [f"tasks=[{task}]", "sweeps=[]", "llm.adapters=[lora]", *overrides])


def _episodes(task: str, n: int, n_pairs: int = 5) -> dict[str, torch.Tensor]:
    system = load_family(LATENT)[0]
    return next(runner.episodes(task_registry.get(task), system, n, n_pairs, n, (1, "test-ttft", task)))


def _method(cfg: CompareConfig, task: str, sample: dict) -> tuple[L.LLMMethod, dict[str, torch.Tensor]]:
    """gpt2_lora with a random tiny backbone, built for the latent system's shapes, and its weights ("trained")."""
    m = next(x for x in L.build_methods(cfg) if x.name == "gpt2_lora")
    demos, _ = TT.episode_pools(task_registry.get(task), sample, 0, 1, cfg.ttft.fill)
    m.model, _ = build_model(m.cfg, {task: sample_shapes(demos, 1)})
    m.model.set_trainable()
    m.model.eval()
    return m, {k: v.clone() for k, v in m.model.adapter_state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_latent_inputs_filled_with_the_prior_or_zeros():
    det = task_registry.get("det")
    sample = _episodes("det", 2)
    demos, query = TT.episode_pools(det, sample, 1, 3, "prior")
    assert set(demos) == set(det.X_KEYS) | set(det.Y_KEYS) and set(query) == set(det.X_KEYS)
    assert all(v.shape[0] == 3 for v in demos.values()) and all(v.shape[0] == 1 for v in query.values())
    assert torch.equal(demos["snr_db"], sample["prior_snr_db"][1, :3])              # the blind value, no theta
    assert torch.equal(demos["h"], torch.zeros_like(sample["latent_h"][1, :3]))     # no prior for h: zeros
    assert torch.equal(query["y"], sample["y"][1, -1:])
    _, zero = TT.episode_pools(det, sample, 1, 3, "zero")
    assert not zero["snr_db"].any()
    # pre_sr's task loss needs the true SNR: the fine-tune uses the label MSE there, the task loss elsewhere
    assert TT.label_loss(task_registry.get("pre_sr")) is not task_registry.get("pre_sr").loss
    assert TT.label_loss(det) is det.loss


def test_every_episode_starts_from_the_trained_adapter(monkeypatch):
    cfg = _cfg("det", "ttft.ks=[2,4]")
    sample = _episodes("det", 3)
    m, saved = _method(cfg, "det", sample)
    starts, ends = [], []

    class Recording(L.Trainer):
        def fit(self):
            starts.append({k: v.clone() for k, v in self.model.adapter_state_dict().items()})
            out = super().fit()
            ends.append({k: v.clone() for k, v in self.model.adapter_state_dict().items()})
            return out

    monkeypatch.setattr(L, "Trainer", Recording)
    s = TT.Setup(cfg.ttft, cfg.ttft_eval_config(), torch.device("cpu"), llm=m, saved=saved)
    values, costs = {}, {}
    TT.llm_chunk(s, task_registry.get("det"), sample, 0, (1, "t"), values, costs, {})
    assert len(starts) == 3 * 2                                          # episodes x k
    assert all(_same(st, saved) for st in starts)                        # each from the trained adapter
    assert not any(_same(e, saved) for e in ends)                        # ... which the fine-tune did change
    assert _same({k: v.clone() for k, v in m.model.adapter_state_dict().items()}, saved)   # restored after
    assert {key for key in values} == {("gpt2_lora+ttft", 2), ("gpt2_lora+ttft", 4)}
    assert all(len(costs[key]["steps"]) == 3 for key in costs)


def test_fine_tune_reads_the_k_pairs_only_never_the_query_label():
    cfg = _cfg("det")
    det = task_registry.get("det")
    sample = _episodes("det", 1)
    m, saved = _method(cfg, "det", sample)

    def pred(smp: dict) -> torch.Tensor:
        demos, query = TT.episode_pools(det, smp, 0, 4, cfg.ttft.fill)
        assert not any(k.startswith(("latent_", "prior_", "oracle_")) for k in (*demos, *query))
        return TT.tune_predict(m, det, demos, query, cfg.ttft, saved, seed=7).pred["x"]

    ref = pred(sample)
    other = dict(sample)
    for key in det.Y_KEYS + ("x_idx",):                                  # another label for the query
        other[key] = sample[key].clone()
        other[key][:, -1] = sample[key][:, 0]
    assert torch.equal(pred(other), ref)
    demo_changed = dict(sample, x=sample["x"].clone())
    demo_changed["x"][:, 0] = -sample["x"][:, 0]                         # a demonstration's label does matter
    assert not torch.equal(pred(demo_changed), ref)


def test_loss_on_the_pairs_falls_and_stops_by_patience_or_the_cap():
    cfg = _cfg("det")
    det = task_registry.get("det")
    sample = _episodes("det", 1)
    m, saved = _method(cfg, "det", sample)
    demos, query = TT.episode_pools(det, sample, 0, 4, cfg.ttft.fill)
    tc = dataclasses.replace(cfg.ttft, max_steps=40, patience=2, min_delta=0.01, lr=1e-2)
    ep = TT.tune_predict(m, det, demos, query, tc, saved, seed=3)
    c = ep.curve
    assert c.stopped == STOP_PATIENCE and ep.steps < 40 and ep.evals == ep.steps + 1
    assert c.best_val < 0.5 * c.val[0] and c.val[c.step.index(c.best_step)] == c.best_val
    assert all(v > c.best_val - 0.01 for v in c.val[-2:])               # the last two evaluations did not improve
    capped = TT.tune_predict(m, det, demos, query, dataclasses.replace(tc, max_steps=3, patience=50), saved, seed=3)
    assert capped.curve.stopped == STOP_CAP and capped.steps == 3 and capped.curve.best_val < capped.curve.val[0]


def test_pick_variant_named_or_best_on_the_seen_family():
    cfg = _cfg("det")
    llms = L.build_methods(dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, adapters=["lora", "no_llm"])))
    names = [m.name for m in llms]
    assert names == ["gpt2_lora", "llama_lora", "no_llm"]
    conv = [{"method": "gpt2_lora", "task": "det", "converged": False, "z": 1.0},
            {"method": "llama_lora", "task": "det", "converged": True, "z": 3.0},
            {"method": "no_llm", "task": "det", "converged": True, "z": 9.0}]
    assert TT.pick_variant(llms, conv, "", ["det"])[0].name == "llama_lora"   # no_llm is not an LLM variant
    assert TT.pick_variant(llms, conv, "no_llm", ["det"])[0].name == "no_llm"
    with pytest.raises(ValueError, match="ttft.variant"):
        TT.pick_variant(llms, conv, "gpt2_frozen", ["det"])
    assert TT.pick_variant([], conv, "", ["det"])[0] is None


def test_config_section_rejects_unknown_keys_and_bad_values():
    for bad in ("ttft.steps=3", "ttft.fill=mean", "ttft.ks=[0,4]", "ttft.tasks=[ce]", "ttft.patience=0"):
        with pytest.raises(ValueError, match="ttft"):
            _cfg("det", bad)


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory) -> Path:
    """The debug comparison (cp only, lora variants, no sweeps / nets) with a random debug native model."""
    from icwm.infer import save_pretrained
    from icwm.model import ModelConfig, build_model as build_icwm
    tmp = tmp_path_factory.mktemp("ttft")
    mcfg = ModelConfig.flavour("debug")
    save_pretrained(build_icwm(mcfg), mcfg, tmp / "model")
    args = [f"out_dir={tmp / 'out'}", f"native.model={tmp / 'model'}", *SMALL]
    return run(load_config(CompareConfig, DEBUG, args), ["--config", str(DEBUG), *args])


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{**r, "k": int(r["k"]) if r["k"] else None, "value": float(r["value"]), "n": int(r["n"])}
                for r in csv.DictReader(f)]


def test_debug_comparison_writes_ttft_csv_with_every_method_and_eta(debug_run: Path):
    with open(debug_run / "ttft.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == runner.COLUMNS
    rows = _rows(debug_run / "ttft.csv")
    cfg = load_config(CompareConfig, debug_run / "config.yaml")
    variant = next(n for n in json.loads((debug_run / "notes.json").read_text()) if n.startswith("ttft: variant"))
    name = variant.split()[2].rstrip(":") + TT.SUFFIX
    assert {(r["task"], r["family"]) for r in rows} == {("cp", "latent_unseen")}
    assert {r["system"] for r in rows} == {"dbgl_unseen_rma_ula4", runner.ALL}
    methods = {runner.MODEL, name, "oracle", "blind", "in_context"}
    nmse = {(r["method"], r["k"]): r["n"] for r in rows if r["metric"] == "nmse" and r["system"] == runner.ALL}
    for k in cfg.ttft.ks:
        assert all(nmse[m, k] == cfg.ttft.episodes for m in methods)    # the same queries for every method
    eta = {(r["method"], r["k"]) for r in rows if r["metric"] == "eta"}
    assert {(m, k) for m in (runner.MODEL, name, "in_context") for k in cfg.ttft.ks} <= eta
    assert {r["k"] for r in rows if r["method"] == "oracle" and r["metric"] == "gap"} == set(cfg.ttft.ks)
    assert all(math.isfinite(r["value"]) for r in rows if r["metric"] in ("nmse", "gap"))
    text = (debug_run / "report.md").read_text()
    assert "## ICL vs test-time fine-tuning" in text and "### cp / latent_unseen" in text
    assert f"| {name} | 16 |" in text and "| icwm | 4 |" in text


def test_cost_columns_positive(debug_run: Path):
    rows = _rows(debug_run / "ttft.csv")
    cfg = load_config(CompareConfig, debug_run / "config.yaml")
    cost = {(r["method"], r["k"], r["metric"]): r["value"] for r in rows if r["system"] == runner.ALL}
    (tuned,) = {m for m, _, _ in cost if m.endswith(TT.SUFFIX)}
    for k in cfg.ttft.ks:
        assert all(cost[tuned, k, c] > 0 for c in ("steps", "seconds", "flops")), k
        assert all(cost[runner.MODEL, k, c] > 0 for c in ("seconds", "flops")), k
        steps = cost[tuned, k, "steps"]
        assert 1 <= steps <= cfg.ttft.max_steps and cost[tuned, k, "evals"] == steps + 1
        assert 0 <= cost[tuned, k, "stopped_patience"] <= 1
    # more pairs per step and per evaluation: a step on 16 pairs costs more FLOPs than one on 4
    assert cost[tuned, 16, "flops"] / cost[tuned, 16, "steps"] > cost[tuned, 4, "flops"] / cost[tuned, 4, "steps"]


def _without_native_seconds(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [r for r in rows if not (r[3] == runner.MODEL and r[5] == "seconds")]


def test_rerun_reuses_each_systems_results(debug_run: Path, tmp_path: Path, monkeypatch):
    """The classical and fine-tuned results come from the cache (costs included: the original run's); the native
    model's are recomputed (same weights: the same values; its wall seconds are this run's)."""
    def never(*a, **kw):
        raise AssertionError("a cached system was scored again")
    monkeypatch.setattr(TT, "score_system", never)
    tmp = debug_run.parent
    args = [f"out_dir={tmp_path / 'again'}", f"native.model={tmp / 'model'}", *SMALL,
            f"llm.cache_dir={debug_run / 'llm_runs'}", f"ttft.cache_dir={debug_run / 'ttft_runs'}"]
    again = run(load_config(CompareConfig, DEBUG, args), ["--config", str(DEBUG), *args])
    assert _without_native_seconds(debug_run / "ttft.csv") == _without_native_seconds(again / "ttft.csv")
    notes = json.loads((again / "notes.json").read_text())
    assert sum("results reused" in n for n in notes) == 1


def test_a_new_native_model_reuses_the_fine_tuning(debug_run: Path, tmp_path: Path, monkeypatch):
    """Other native weights: the cache still answers for the classical and fine-tuned methods (nothing is
    fine-tuned again) and only the native rows change."""
    def never(*a, **kw):
        raise AssertionError("a cached system was scored again")
    monkeypatch.setattr(TT, "score_system", never)
    tmp = debug_run.parent
    other = tmp_path / "model"
    shutil.copytree(tmp / "model", other)
    weights = load_file(str(other / "model.safetensors"))
    save_file({k: v + 0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0)) if v.is_floating_point()
               else v for k, v in weights.items()}, str(other / "model.safetensors"))
    args = [f"out_dir={tmp_path / 'other'}", f"native.model={other}", *SMALL,
            f"llm.cache_dir={debug_run / 'llm_runs'}", f"ttft.cache_dir={debug_run / 'ttft_runs'}"]
    again = run(load_config(CompareConfig, DEBUG, args), ["--config", str(DEBUG), *args])
    before, after = _rows(debug_run / "ttft.csv"), _rows(again / "ttft.csv")
    keyed = lambda rows, native: {(r["system"], r["method"], r["k"], r["metric"]): r["value"]  # noqa: E731
                                  for r in rows if (r["method"] == runner.MODEL) == native}
    assert keyed(before, False) == keyed(after, False)
    b, a = keyed(before, True), keyed(after, True)
    assert b.keys() == a.keys() and any(b[k] != a[k] for k in b if k[3] == "nmse")


def test_system_key_follows_the_episodes_and_the_weights(monkeypatch):
    cfg = _cfg("cp")
    sample = _episodes("cp", 2)
    m, saved = _method(cfg, "cp", sample)
    system = load_family(LATENT)[0]
    s = TT.Setup(cfg.ttft, cfg.ttft_eval_config(), torch.device("cpu"), None, (), m, saved)
    key = TT.system_key(s, "cp", "latent_unseen", system)
    assert TT.system_key(dataclasses.replace(s, tc=dataclasses.replace(s.tc, cache_dir="/x")), "cp",
                         "latent_unseen", system) == key
    bumped = {k: v + 1 for k, v in saved.items()}
    others = [dataclasses.replace(s, saved=bumped), dataclasses.replace(s, tc=dataclasses.replace(s.tc, lr=2e-3)),
              dataclasses.replace(s, ecfg=dataclasses.replace(s.ecfg, seed=s.ecfg.seed + 1))]
    assert all(TT.system_key(o, "cp", "latent_unseen", system) != key for o in others)
    assert TT.system_key(s, "cp", "latent_unseen", dataclasses.replace(system, snr_db=[0.0, 5.0])) != key
