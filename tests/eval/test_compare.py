"""Head-to-head comparison: the debug config end to end (every method kind, results.csv schema, report tables,
plots, provenance, same seed -> same results apart from timings), config errors, single-task nets learning on real
task data, the LLM4WM average on a hand-made table, and a backbone without weights skipped with a note."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from adapters_llm.train import flatten_groups
from icwm import tasks as task_registry
from icwm.compare import table as T
from icwm.compare.config import NETS, CompareConfig, SingleTaskConfig
from icwm.compare.methods import COLUMNS, TIMING
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
    assert {r["k"] for r in native if r["family"] == "seen"} == {0, 1, 2, 4} and all(r["n_shots"] is None for r in native)
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
    for heading in ("### pre_sr (sum_rate", "### det (ser", "### cp (nmse_mean_db", "## LLM4WM-style table",
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


def test_same_seed_same_results(debug_run: Path, tmp_path: Path):
    other = _run(tmp_path / "b")
    a, b = _csv(debug_run / "results.csv"), _csv(other / "results.csv")
    assert len(a) == len(b) > 100
    keep = [i for i, c in enumerate(COLUMNS) if c not in TIMING]
    assert [[r[i] for i in keep] for r in a] == [[r[i] for i in keep] for r in b]


@pytest.mark.parametrize("override,field", [
    ("llm.adapterz=[lora]", "llm.adapterz"), ("tasks=[pre_sr,nope]", "tasks"), ("llm.adapters=[qlora]", "llm.adapters"),
    ("single_task.nets=[rnn]", "single_task.nets"), ("sweeps=[{name: s, tasks: [pre_sr], param: power}]",
                                                     "sweeps.param"), ("native.ks=[-1]", "native.ks")])
def test_bad_config_names_the_field(override: str, field: str):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(CompareConfig, DEBUG, [override])


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


def test_llm4wm_average_on_a_hand_made_table():
    vals = {"ce": 0.1, "cp": 0.2, "pf": 0.3, "bf": 0.6, "de": 0.05, "pe": 0.15}
    # terms: 0.1, 0.2, 0.3, 1 - 0.6 = 0.4, 0.05, 0.15 -> mean 1.2 / 6
    assert T.llm4wm_avg(vals) == pytest.approx(0.2)
    assert T.llm4wm_avg({**vals, "pe": None}) is None
    assert T.llm4wm_avg({**vals, "bf": float("nan")}) is None
    assert T.llm4wm_avg({**vals, "bf": 1.0}) == pytest.approx((0.1 + 0.2 + 0.3 + 0.0 + 0.05 + 0.15) / 6)
