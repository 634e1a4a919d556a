"""Head-to-head comparison: the debug config end to end (every method kind, results.csv schema, report tables,
plots, provenance, same seed -> same results apart from timings, training curves and convergence verdicts, cached
adapters reused on a rerun), cached single-task nets (equal to the trained ones, keyed by their setup) and cache
entries, config errors, single-task nets learning on real task data and stopping early, the trivial baselines and
the convergence test on hand-made values, the LLM4WM average and the summary on hand-made tables, and a backbone
without weights skipped with a note."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from adapters_llm.train import flatten_groups
from icwm import tasks as task_registry
from icwm.compare import converge as C
from icwm.compare import llm as L
from icwm.compare import table as T
from icwm.compare.config import NETS, CompareConfig, SingleTaskConfig
from icwm.compare.methods import COLUMNS, TIMING, Acc
from icwm.compare.run import run
from icwm.compare.single_task import train_net
from icwm.config import load_config
from icwm.data.config import load_family

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "configs" / "compare" / "debug.yaml"
KINDS = {"native", "llm", "single_task", "classical"}


def _run(out: Path, *overrides: str) -> Path:
    cfg = load_config(CompareConfig, DEBUG, [f"out_dir={out}", *overrides])
    return run(cfg, ["--config", str(DEBUG), f"out_dir={out}", *overrides])


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("compare") / "a")


def _csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_results_schema_and_every_method_kind(debug_run: Path):
    rows = T.read(debug_run / "results.csv")
    assert tuple(_csv(debug_run / "results.csv")[0]) == COLUMNS
    assert {r["kind"] for r in rows} == KINDS
    llm = {r["adapter"] for r in rows if r["kind"] == "llm"}
    assert llm == {"lora", "moe_lora", "nf4_loftq", "nf4_naive", "frozen", "no_llm"}
    assert {r["backbone"] for r in rows if r["kind"] == "llm"} == {"gpt2", "llama", "-"}
    assert {r["quant"] for r in rows if r["adapter"].startswith("nf4")} == {"nf4"}
    assert {r["method"] for r in rows if r["kind"] == "single_task"} == {f"{t}_{n}" for t in ("pre_sr", "det", "cp")
                                                                          for n in NETS}
    assert {"wmmse", "zf", "rzf", "mrt", "ml", "lmmse", "ar"} <= {r["method"] for r in rows}
    fams = {r["family"] for r in rows}
    assert {"seen", "unseen", "sweep_snr", "sweep_users", "sweep_speed"} <= fams
    native = [r for r in rows if r["kind"] == "native" and r["metric"] != "weights_mb"]
    assert {r["k"] for r in native if r["family"] == "seen"} == {0, 1, 2, 4}
    assert all(r["n_shots"] is None for r in native)
    assert {r["n_shots"] for r in rows if r["kind"] == "llm" and r["family"] == "unseen"} == {0, 4}
    sweep = [r for r in rows if r["family"].startswith("sweep_")]
    assert all(r["sweep_value"] is not None for r in sweep)
    assert all(r["sweep_value"] is None for r in rows if not r["family"].startswith("sweep_"))
    # the same queries for every method: each pooled seen row counts episodes x 1 query
    seen_ser = T.select(rows, task="det", family="seen", metric="ser")
    assert {r["n_eval"] for r in seen_ser} == {4}
    # the Nt = 8 unseen system does not fit the fixed-size baselines: they pool fewer queries than native ICWM
    unseen = {r["kind"]: r["n_eval"] for r in T.select(rows, task="cp", family="unseen", metric="nmse")}
    assert unseen["native"] == unseen["classical"] == unseen["llm"] == 8 and unseen["single_task"] == 4
    assert all(math.isfinite(r["value"]) for r in rows if r["metric"] in ("sum_rate", "ser"))


def test_report_plots_provenance(debug_run: Path):
    text = (debug_run / "report.md").read_text()
    for heading in ("## Summary", "## Per task\n", "### pre_sr (sum_rate", "### det (ser", "### cp (nmse_mean_db",
                    "## LLM4WM-style table",
                    "## Quantisation (gpt2)", "## Quantisation (llama)", "## Backbones", "## Cost", "## Notes"):
        assert heading in text, heading
    assert "| icwm (k=4) | native |" in text and "gpt2_lora zero-shot" in text and "(n_shots=4)" in text
    assert "batch of 4 episodes" in text and "not evaluated: " in text
    plots = {p.name for p in (debug_run / "plots").glob("*.png")}
    assert {"sweep_snr_pre_sr.png", "sweep_users_pre_sr.png", "sweep_snr_det.png", "sweep_speed_cp.png",
            "sweep_snr_cp.png", "k_cp.png", "k_det.png", "k_pre_sr.png", "native_vs_llm.png"} <= plots
    assert all((debug_run / "plots" / p).stat().st_size > 5000 for p in plots)
    prov = json.loads((debug_run / "provenance.json").read_text())
    assert len(prov["git_rev"]) == 40 and isinstance(prov["git_dirty"], bool)
    for pkg in ("python", "torch", "transformers", "peft", "deepspeed", "bitsandbytes", "sionna-no-rt"):
        assert prov["versions"][pkg], pkg
    assert str(DEBUG) in prov["command"]
    again = load_config(CompareConfig, debug_run / "config.yaml")     # the resolved config loads back
    assert again.tasks == ["pre_sr", "det", "cp"] and again.out_dir == str(debug_run)


def test_curves_and_convergence_verdicts(debug_run: Path):
    rows = T.read(debug_run / "results.csv")
    learned = {(r["method"], r["task"]) for r in rows if r["kind"] in ("llm", "single_task") and r["task"] != "-"}
    with open(debug_run / "convergence.csv", newline="") as f:
        conv = list(csv.DictReader(f))
    assert {(r["method"], r["task"]) for r in conv} == learned          # every learned method x task, once
    assert len(conv) == len(learned) and {r["trivial"] for r in conv} == {"mrt", "zero", "repeat_last"}
    for r in conv:                                                       # the verdict follows the z rule
        assert (r["converged"] == "True") == (float(r["z"]) > 2.0), r
        assert r["stopped"] in ("patience", "cap") and int(r["steps_run"]) <= 4
    with open(debug_run / "curves.csv", newline="") as f:
        curves = list(csv.DictReader(f))
    methods = {m for m, _ in learned}
    assert {r["method"] for r in curves} == methods
    first = [r for r in curves if r["task"] == "score" and r["step"] == "0"]
    assert len(first) == len(methods)
    for r in first:      # the score at step 0: mean over tasks of loss / |loss| = the mean sign (pre_sr's is -1)
        signs = [math.copysign(1.0, float(q["val_loss"])) for q in curves if q["method"] == r["method"]
                 and q["step"] == "0" and q["task"] != "score"]
        assert float(r["val_loss"]) == pytest.approx(sum(signs) / len(signs)), r
    text = (debug_run / "report.md").read_text()
    bad = [r for r in conv if r["converged"] != "True"]
    assert "## Convergence" in text and f"**{len(bad)} of {len(conv)} (method, task) pairs not converged" in text
    for r in bad[:3]:
        assert f"| {r['method']}{' zero-shot' if r['kind'] == 'llm' else ''} (not converged) |" in text
    assert {"curves_llm.png", "curves_single_task.png"} <= {p.name for p in (debug_run / "plots").glob("*.png")}
    # the trivial predictor defined here is scored like any classical method: det x = 0 has NMSE 1
    zero = T.select(rows, method="zero", task="det", family="seen", metric="nmse")
    assert zero and zero[0]["value"] == pytest.approx(1.0)


def test_rerun_reuses_cached_adapters(tmp_path: Path, monkeypatch):
    calls = []
    real = L.run_finetune
    monkeypatch.setattr(L, "run_finetune", lambda cfg: calls.append(cfg.train.out_dir) or real(cfg))
    small = ("tasks=[cp]", "sweeps=[]", "native.model=none", "single_task.enabled=false", "llm.adapters=[lora,no_llm]",
             "llm.n_shots=[]")
    first = _run(tmp_path / "c", *small)
    assert len(calls) == 3                                               # gpt2_lora, llama_lora, no_llm
    second = _run(tmp_path / "c", *small)
    assert len(calls) == 3                                               # the second run trained nothing
    notes = json.loads((second / "notes.json").read_text())
    assert sum("trained adapter reused" in n for n in notes) == 3
    keep = [i for i, c in enumerate(COLUMNS) if c not in TIMING]
    a, b = _csv(first / "results.csv"), _csv(second / "results.csv")
    assert [[r[i] for i in keep] for r in a] == [[r[i] for i in keep] for r in b]
    _run(tmp_path / "c", *small, "llm.adapters=[no_llm]", "llm.train_groups=3")   # other data: trained again
    assert len(calls) == 4


def test_cache_key_follows_config_and_data_not_the_output_folder():
    cfg = load_config(CompareConfig, DEBUG)
    m = L.build_methods(cfg)[0]
    key = L.cache_key(m.cfg)
    moved = dataclasses.replace(m.cfg, train=dataclasses.replace(m.cfg.train, out_dir="/elsewhere"))
    assert L.cache_key(moved) == key and len(key) == 64
    for other in (dataclasses.replace(m.cfg, train=dataclasses.replace(m.cfg.train, lr=m.cfg.train.lr * 2)),
                  dataclasses.replace(m.cfg, data=dataclasses.replace(m.cfg.data, seed=m.cfg.data.seed + 1))):
        assert L.cache_key(other) != key


def _acc(key, metric: str, values: list[float]) -> Acc:
    acc = Acc()
    acc.add(key, {metric: torch.tensor(values)}, 0.0)
    return acc


def test_convergence_rule_on_hand_made_values():
    g = torch.Generator().manual_seed(0)
    ref = (1.0 + 0.1 * torch.rand(64, generator=g)).tolist()            # the trivial baseline's per-query NMSE
    learned = ("net", None, None)
    for values, ok in ((ref, False), ([0.5 * v for v in ref], True), ([2.0 * v for v in ref], False)):
        acc = _acc(("ls_linear", 1, None), "nmse", ref)
        acc.merge(_acc(learned, "nmse", values))
        acc.merge(_acc(("ls_linear", 4, None), "nmse", [0.0] * 64))     # larger k of the same method: not used
        (row,) = C.check_family("ce", [acc], [(learned, "single_task")], 2.0)
        assert row["converged"] is ok and row["trivial"] == "ls_linear" and row["n_eval"] == 64, row
    assert row["trivial_value"] == pytest.approx(10 * math.log10(sum(ref) / 64))   # nmse_mean_db of the reference
    # higher-is-better metric; a method that scored no query of the family is not converged
    acc = _acc(("mrt", None, None), "sum_rate", [1.0, 2.0, 3.0, 4.0])
    acc.merge(_acc(learned, "sum_rate", [2.0, 3.1, 3.9, 5.0]))
    (row,) = C.check_family("pre_sr", [acc], [(learned, "llm")], 2.0)
    assert row["converged"] and row["z"] > 2.0
    (row,) = C.check_family("pre_sr", [acc], [(("absent", None, 0), "llm")], 2.0)
    assert not row["converged"] and row["n_eval"] == 0
    # bf is checked on the beam gain ratio (its eta metric), not on top-1
    acc = _acc(("chance", None, None), "gain_ratio", [0.05] * 4 + [0.06] * 4)
    acc.merge(_acc(learned, "gain_ratio", [0.3, 0.2, 0.25, 0.35, 0.3, 0.28, 0.22, 0.31]))
    acc.merge(_acc(learned, "top1", [0.0] * 8))
    (row,) = C.check_family("bf", [acc], [(learned, "single_task")], 2.0)
    assert row["metric"] == "gain_ratio" and row["converged"], row


def test_trivial_predictors():
    rng = torch.Generator().manual_seed(1)
    gain = torch.rand(5, 32, generator=rng)
    bf = C.trivial_pred(task_registry.get("bf"), {"beam_gain": gain, "beam": torch.zeros(5, dtype=torch.long)}, None)
    assert torch.allclose(bf["top1"], torch.full((5,), 1 / 32, dtype=torch.float64))
    torch.testing.assert_close(bf["gain_ratio"], (gain.mean(-1) / gain.max(-1).values).double())
    d = torch.tensor([10.0, 100.0, 1000.0])
    de = C.trivial_pred(task_registry.get("de"), {"distance_m": d}, 100.0)
    torch.testing.assert_close(de["mae_m"], torch.tensor([90.0, 0.0, 900.0]))
    assert C.trivial_pred(task_registry.get("cp"), {}, None) is None     # the task module has it (repeat_last)


def test_same_seed_same_results(debug_run: Path, tmp_path: Path):
    other = _run(tmp_path / "b")
    a, b = _csv(debug_run / "results.csv"), _csv(other / "results.csv")
    assert len(a) == len(b) > 100
    keep = [i for i, c in enumerate(COLUMNS) if c not in TIMING]
    assert [[r[i] for i in keep] for r in a] == [[r[i] for i in keep] for r in b]


@pytest.mark.parametrize("override,field", [
    ("llm.adapterz=[lora]", "llm.adapterz"), ("tasks=[pre_sr,nope]", "tasks"), ("llm.adapters=[qlora]", "llm.adapters"),
    ("single_task.nets=[rnn]", "single_task.nets"), ("single_task.residual=[det]", "single_task.residual"),
    ("sweeps=[{name: s, tasks: [pre_sr], param: power}]", "sweeps.param"), ("native.ks=[-1]", "native.ks"),
    ("native.table_k=3", "native.table_k"),
    ("single_task.min_steps=-1", "single_task.min_steps")])
def test_bad_config_names_the_field(override: str, field: str):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(CompareConfig, DEBUG, [override])


def test_a_bad_sweep_point_is_refused_before_any_baseline_trains(tmp_path: Path, monkeypatch):
    """sweeps' values and base are checked against the seen systems before the single-task nets and LLMs train."""
    import icwm.compare.run as R

    def trained(*_args, **_kw):
        raise AssertionError("a baseline trained before the sweeps were checked")
    monkeypatch.setattr(R, "train_single_task", trained)
    monkeypatch.setattr(R, "train_llms", trained)
    with pytest.raises(ValueError, match=r"sweeps\.values: expected integers >= 1 for num_users"):
        _run(tmp_path / "c", "tasks=[pre_sr]", "native.model=none",
             "sweeps=[{name: k, tasks: [pre_sr], param: num_users, values: [2.5]}]")


def test_missing_backbone_weights_are_skipped_with_a_note(tmp_path: Path):
    out = _run(tmp_path / "c", "tasks=[pre_sr]", "sweeps=[]", "native.model=none", "single_task.enabled=false",
               "llm.adapters=[lora]", "llm.backbone_paths.gpt2=/no/such/gpt2",
               "llm.backbones.llama=[backbone.source=random]")
    rows = T.read(out / "results.csv")
    assert {r["method"] for r in rows if r["kind"] == "llm"} == {"llama_lora"}
    assert "gpt2_lora skipped: gpt2 weights not found" in (out / "report.md").read_text()


@pytest.mark.parametrize("kind", NETS)
def test_single_task_net_loss_goes_down_on_real_data(kind: str):
    system = load_family(ROOT / "configs" / "systems" / "debug_seen.yaml")[0]
    task = task_registry.get("cp")
    sample = task.generate(system, 4, 8, torch.Generator().manual_seed(3))
    pool = flatten_groups(sample)
    cfg = SingleTaskConfig(width=16, steps=40, supervised_steps=0, batch_size=32, lr=3e-3)
    before, _ = train_net(task, kind, pool, SingleTaskConfig(width=16, steps=1, supervised_steps=0), seed=5)
    net, log = train_net(task, kind, pool, cfg, seed=5)
    with torch.no_grad():
        loss_before = float(task.loss(before(pool), pool).mean())
        loss_after = float(task.loss(net(pool), pool).mean())
    assert loss_after < 0.8 * loss_before, (kind, loss_before, loss_after)
    assert log["train_wall_s"] > 0 and net(pool)["h_fut"].shape == pool["h_fut"].shape


@pytest.mark.parametrize("task_id", ["ce", "cp"])
def test_residual_single_task_net_starts_at_its_first_guess_and_improves_on_it(task_id: str):
    """single_task.residual: the untrained net predicts exactly the trivial baseline (LS + linear interpolation,
    repeat-last); training lowers the loss below that baseline's."""
    system = load_family(ROOT / "configs" / "systems" / "debug_seen.yaml")[0]
    task = task_registry.get(task_id)
    pool = flatten_groups(task.generate(system, 8, 8, torch.Generator().manual_seed(3)))
    y = task.Y_KEYS[0]
    first = task.baselines({k: v[:, None] for k, v in pool.items()})[task.SPEC.first_guess][y][:, 0]
    cfg = SingleTaskConfig(width=16, steps=1, supervised_steps=0, lr=1e-12, residual=[task_id])
    untrained, _ = train_net(task, "mlp", pool, cfg, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(untrained(pool)[y], first)
        base_loss = float(task.loss({y: first}, pool).mean())
    net, _ = train_net(task, "mlp", pool, dataclasses.replace(cfg, steps=150, lr=3e-3), seed=5)
    with torch.no_grad():
        assert float(task.loss(net(pool), pool).mean()) < 0.9 * base_loss


def test_single_task_net_stops_early_and_restores_its_best_weights():
    system = load_family(ROOT / "configs" / "systems" / "debug_seen.yaml")[0]
    task = task_registry.get("cp")
    pool = flatten_groups(task.generate(system, 14, 8, torch.Generator().manual_seed(3)))
    train, val = {k: v[:96] for k, v in pool.items()}, {k: v[96:] for k, v in pool.items()}
    cfg = SingleTaskConfig(width=16, steps=600, supervised_steps=0, batch_size=32, lr=3e-3, eval_every=10, patience=3,
                           val_groups=1)
    net, log = train_net(task, "mlp", train, cfg, seed=5, val=val)
    c = log["curve"]
    assert c["stopped"] == "patience" and log["steps"] == c["steps_run"] < 600      # 96 samples: it overfits
    assert log["steps"] - c["best_step"] == 3 * 10 and c["train"][-1] < c["train"][0]
    with torch.no_grad():
        restored = float(task.loss(net(val), val).mean())
    assert restored == pytest.approx(min(c["val_task"]["cp"]), rel=1e-5)
    assert min(c["val_task"]["cp"]) < c["val_task"]["cp"][0]
    # min_steps: patience cannot stop it before then (a net on a plateau gets that long to leave it)
    _, late = train_net(task, "mlp", train, dataclasses.replace(cfg, min_steps=log["steps"] + 100), 5, val)
    assert late["steps"] >= log["steps"] + 100 and late["curve"]["stopped"] == "patience"


def test_llm4wm_average_on_a_hand_made_table():
    vals = {"ce": 0.1, "cp": 0.2, "pf": 0.3, "bf": 0.6, "de": 0.05, "pe": 0.15}
    # terms: 0.1, 0.2, 0.3, 1 - 0.6 = 0.4, 0.05, 0.15 -> mean 1.2 / 6
    assert T.llm4wm_avg(vals) == pytest.approx(0.2)
    assert T.llm4wm_avg({**vals, "pe": None}) is None
    assert T.llm4wm_avg({**vals, "bf": float("nan")}) is None
    assert T.llm4wm_avg({**vals, "bf": 1.0}) == pytest.approx((0.1 + 0.2 + 0.3 + 0.0 + 0.05 + 0.15) / 6)


def _row(method: str, kind: str, family: str, value: float, k=None, n_shots=None, n_eval=8) -> dict:
    return {"method": method, "kind": kind, "task": "ce", "family": family, "system": T.ALL, "metric": "nmse_mean_db",
            "value": value, "k": k, "n_shots": n_shots, "n_eval": n_eval, "adapter": method}


def test_summary_picks_the_best_of_each_kind_and_skips_unconverged_methods():
    from icwm.compare.report import summary_lines
    rows = [_row("icwm", "native", "seen", -9.0, k=16), _row("icwm", "native", "seen", -5.0, k=0),
            _row("lora", "llm", "seen", -4.0, n_shots=0), _row("lora", "llm", "seen", -6.0, n_shots=16),
            _row("moe", "llm", "seen", -8.0, n_shots=0), _row("no_llm", "llm", "seen", -7.0, n_shots=0),
            _row("ce_mlp", "single_task", "seen", -5.5),
            _row("ce_cnn", "single_task", "seen", -7.0, n_eval=4), _row("lmmse", "classical", "seen", -9.5, k=16),
            _row("ls_linear", "classical", "seen", -4.4, k=1), _row("lora", "llm", "unseen", -3.0, n_shots=0)]
    lines = summary_lines(rows, ["ce"], ["seen", "unseen"], 16, frozenset({("moe", "ce")}))
    seen = next(ln for ln in lines if "| seen |" in ln)
    # lower NMSE is better; moe (-8) is not converged and no_llm (-7) is no LLM, so lora fine-tuned on N = 16 is
    # the best adapted LLM;
    # ce_cnn pooled fewer queries than the others (*)
    assert seen == ("| ce | nmse_mean_db (lower better) | seen | -9 | -6 (lora, N=16) | -7* (ce_cnn) | "
                    "-9.5 (lmmse, k=16) |")
    unseen = next(ln for ln in lines if "| unseen |" in ln)
    assert unseen == "| ce | nmse_mean_db (lower better) | unseen | - | -3 (lora, zero-shot) | - | - |"


def test_cached_single_task_net_equals_the_trained_one_and_follows_its_setup(tmp_path: Path, monkeypatch):
    from icwm.compare import single_task as S
    system = load_family(ROOT / "configs" / "systems" / "debug_seen.yaml")[0]
    task = task_registry.get("cp")
    pool = flatten_groups(task.generate(system, 3, 8, torch.Generator().manual_seed(3)))
    val = flatten_groups(task.generate(system, 1, 8, torch.Generator().manual_seed(4)))
    cfg = SingleTaskConfig(width=16, steps=20, supervised_steps=0, eval_every=5, patience=2, val_groups=1)
    data = {"systems": [system.name], "seed": 3}
    calls = []
    real = S.train_net
    monkeypatch.setattr(S, "train_net", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    net, log = S.train_cached(task, "gru", pool, cfg, 5, val, tmp_path, data)
    again, log2 = S.train_cached(task, "gru", pool, cfg, 5, val, tmp_path, data)
    assert len(calls) == 1 and not log["cached"] and log2["cached"]
    assert log2["curve"] == log["curve"] and log2["steps"] == log["steps"]
    with torch.no_grad():
        assert torch.equal(again(pool)["h_fut"], net(pool)["h_fut"])
    # what trains nothing (the list of nets, the cache folder) keeps the key; the setup, seed and data change it
    S.train_cached(task, "gru", pool, dataclasses.replace(cfg, nets=["gru"]), 5, val, tmp_path, data)
    assert len(calls) == 1
    S.train_cached(task, "gru", pool, dataclasses.replace(cfg, lr=2e-3), 5, val, tmp_path, data)
    S.train_cached(task, "gru", pool, cfg, 6, val, tmp_path, data)
    S.train_cached(task, "gru", pool, cfg, 5, val, tmp_path, {**data, "seed": 4})
    assert len(calls) == 4
    S.train_cached(task, "gru", pool, cfg, 5, val, None, data)               # no cache folder: always trains
    assert len(calls) == 5


def test_cache_entry_without_its_entry_file_is_not_an_entry(tmp_path: Path):
    from icwm.compare import cache
    key = cache.digest({"a": 1})
    assert key != cache.digest({"a": 2}) and len(key) == 64
    d = cache.save(tmp_path, "x", key, {"v": [1.5, float("nan")]}, {"w": torch.arange(3.0)})
    meta, tensors = cache.load(tmp_path, "x", key)
    assert meta["v"][0] == 1.5 and math.isnan(meta["v"][1]) and torch.equal(tensors["w"], torch.arange(3.0))
    assert cache.load(tmp_path, "x", cache.digest({"a": 2})) is None        # another key
    (d / cache.ENTRY).unlink()                                              # as a run killed before it landed
    assert cache.load(tmp_path, "x", key) is None
    w = {"w": torch.arange(3.0)}
    assert cache.tensors_digest(w) == cache.tensors_digest({"w": torch.arange(3.0)})
    assert cache.tensors_digest(w) != cache.tensors_digest({"w": torch.arange(3.0) + 1e-6})


def test_per_task_line_chooses_on_the_seen_family_and_reports_training_cost_eta_and_marks():
    from icwm.compare.pertask import per_task_lines
    rows = [_row("icwm", "native", "seen", -9.0, k=16), _row("icwm", "native", "unseen", -12.0, k=16),
            _row("lora", "llm", "seen", -6.0, n_shots=0), _row("lora", "llm", "unseen", -7.0, n_shots=16),
            _row("nf4", "llm", "seen", -5.0, n_shots=0), _row("nf4", "llm", "unseen", -11.0, n_shots=0),
            _row("moe", "llm", "seen", -8.0, n_shots=0), _row("ce_mlp", "single_task", "seen", -5.5),
            _row("lmmse", "classical", "seen", -9.5, k=16), _row("lmmse", "classical", "unseen", -13.0, k=16)]
    for r in rows:
        r["train_wall_s"] = {"lora": 4500.0, "ce_mlp": 7.5}.get(r["method"])
    conv = [{"method": "lora", "task": "ce", "steps_run": "6000", "best_step": "5900", "stopped": "cap"},
            {"method": "ce_mlp", "task": "ce", "steps_run": "3000", "best_step": "1200", "stopped": "patience"}]
    ttft = [{"task": "ce", "family": "latent_unseen", "system": T.ALL, "method": m, "k": k, "metric": "eta",
             "value": v, "n": 64} for m, k, v in [("icwm", 4, 0.4), ("icwm", 16, 0.77), ("lora+ttft", 16, 0.26),
                                                   ("in_context", 16, 0.99)]]
    lines = per_task_lines(rows, conv, ttft, ["ce"], ["seen", "unseen"], 16, frozenset({("moe", "ce")}))
    line = next(ln for ln in lines if ln.startswith("| ce |"))
    # moe (-8) is not converged; lora wins on the seen family (-6 vs nf4's -5) although nf4 is better unseen
    assert line == ("| ce | nmse_mean_db | -9 / -12 | lora: -6 / -7 | 6000 steps (best 5900, cap), 75 min | "
                    "ce_mlp: -5.5 / - | 3000 steps (best 1200, patience), 7.5 s | lmmse: -9.5 / -13 | "
                    "k=16: 0.77 / 0.26 / 0.99 | moe |")
    quiet = [{**r, "value": float("nan")} for r in ttft]
    # with no convergence file moe is a candidate (and has no steps to show); a family whose eta is undefined
    line = next(ln for ln in per_task_lines(rows, [], quiet, ["ce"], ["seen", "unseen"], 16) if ln.startswith("| ce"))
    assert line.endswith("| teaches nothing | none |") and "| moe: -8 / - | - steps |" in line
