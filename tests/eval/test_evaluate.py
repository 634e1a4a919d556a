"""Evaluation: runner bookkeeping with a fake task, report / plots / targets, config errors, one real tiny run."""
from __future__ import annotations

import importlib.util
import math
import types
from pathlib import Path

import pytest
import torch

import icwm.tasks
from icwm.config import load_config
from icwm.eval import report as rep
from icwm.eval.config import EvalConfig
from icwm.eval.plots import plot_all
from icwm.eval.runner import ALL, COLUMNS, MODEL, EvalResult, load_families, run
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "configs" / "eval" / "debug.yaml"


def fake_task(task_id: str, seen: list) -> types.ModuleType:
    """Scalar task y = c x (1 + 1e-3 noise), c fixed per episode; ``seen`` records (method, k, query x) of every
    evaluation. The noise keeps the model's errors finite (an exact fit would give NMSE -inf dB)."""
    m = types.ModuleType(f"fake_{task_id}")
    m.ID, m.X_KEYS, m.Y_KEYS = task_id, ("x",), ("y",)

    def generate(cfg, n_groups, n_per_group, rng):
        x = torch.randn(n_groups, n_per_group, generator=rng) + 3.0
        c = torch.rand(n_groups, 1, generator=rng) + 0.5 * cfg.num_users
        return {"x": x, "y": c * x * (1.0 + 1e-3 * torch.randn(n_groups, n_per_group, generator=rng))}

    def metric(pred, sample):
        err = (pred["y"] - sample["y"]).abs()
        return {"err": err, "nmse": err.pow(2) / sample["y"].pow(2)}

    def baselines(sample):
        seen.append(("baselines", sample["x"].shape[1] - 1, sample["x"][:, -1].clone()))
        return {"oracle": {"y": sample["y"].clone()}, "zero": {"y": torch.zeros_like(sample["y"])}}

    m.generate, m.metric, m.baselines = generate, metric, baselines
    return m


class FakeModel(torch.nn.Module):
    """Least-squares slope from the demos (0 without demos); records the queries it answers."""

    def __init__(self, task_id: str, k_max: int, seen: list):
        super().__init__()
        self.cfg = types.SimpleNamespace(k_max=k_max, tasks=(task_id,))
        self.seen = seen

    def forward(self, batch):
        x, y, k = batch["x"], batch["y"], batch["k"]
        assert bool((y[:, -1] == 0).all()), "the query's labels must be hidden"
        self.seen.append((MODEL, k, x[:, -1].clone()))
        c = (x[:, :k] * y[:, :k]).sum(1) / (x[:, :k].pow(2).sum(1) + 1e-30) if k else torch.zeros(x.shape[0])
        return {"y": c[:, None] * x}


FAMILIES = {"seen": [SystemConfig(name="s1", num_users=2), SystemConfig(name="s2", num_users=3)],
            "unseen": [SystemConfig(name="u1", num_users=4)]}


def _run(monkeypatch, task_id="cp", seed=1, k_max=4):
    seen: list = []
    monkeypatch.setattr(icwm.tasks, "get", lambda t: fake_task(t, seen))
    cfg = EvalConfig(model="none", tasks=[task_id], ks=[0, 1, 2, 4, 8], families=["seen", "unseen"], episodes=5,
                     batch_size=2, seed=seed, device="cpu")
    res = run(cfg, FakeModel(task_id, k_max, seen), FAMILIES, progress=False)
    return res, seen


def _value(res, method, k, metric, family="seen", system=ALL):
    return [r for r in res.rows if (r["method"], r["k"], r["metric"], r["family"], r["system"]) ==
            (method, k, metric, family, system)]


def test_runner_bookkeeping(monkeypatch):
    res, seen = _run(monkeypatch)
    assert res.ks == [0, 1, 2, 4] and res.model_ks == [0, 1, 2, 4]     # capped at the model's k_max, and said so
    assert res.notes == ["ks [8] not evaluated: beyond the model's k_max (4)"]
    for r in res.rows:
        assert tuple(r) == COLUMNS
        assert r["n"] == (10 if r["family"] == "seen" and r["system"] == ALL else 5)
    assert {r["k"] for r in res.rows if r["method"] == MODEL} == {0, 1, 2, 4}
    assert {r["k"] for r in res.rows if r["method"] != MODEL} == {None}     # no demos used
    # k = 0 predicts 0 (error = |y|, as the "zero" baseline), k >= 1 recovers y up to the noise (the oracle exactly)
    zero, model0 = _value(res, "zero", None, "err")[0], _value(res, MODEL, 0, "err")[0]
    assert model0["value"] == pytest.approx(zero["value"]) and zero["value"] > 1.0
    assert _value(res, MODEL, 4, "err")[0]["value"] < 0.05 and _value(res, "oracle", None, "err")[0]["value"] == 0
    assert _value(res, "oracle", None, "nmse_mean_db")[0]["value"] == -math.inf
    # pooled rows are the n-weighted means of the systems
    per = [_value(res, MODEL, 0, "err", system=s)[0]["value"] for s in ("s1", "s2")]
    assert _value(res, MODEL, 0, "err")[0]["value"] == pytest.approx(sum(per) / 2)


def test_same_queries_for_every_method_and_k(monkeypatch):
    _, seen = _run(monkeypatch)
    chunks: dict = {}
    for method, k, xq in seen:
        chunks.setdefault((method, k), []).append(xq)
    queries = {key: torch.cat(v) for key, v in chunks.items()}
    assert set(queries) == {(MODEL, 0), (MODEL, 1), (MODEL, 2), (MODEL, 4), ("baselines", 0)}
    ref = queries[("baselines", 0)]
    assert ref.numel() == 3 * 5
    for v in queries.values():
        assert torch.equal(v, ref)


def test_context_baselines_run_at_each_k(monkeypatch):
    res, seen = _run(monkeypatch, task_id="de")           # k-NN tasks read the episode's demos
    assert {r["k"] for r in res.rows if r["method"] == "oracle"} == {1, 2, 4}
    assert {k for m, k, _ in seen if m == "baselines"} == {1, 2, 4}


def test_same_seed_same_csv(monkeypatch, tmp_path):
    paths = []
    for i, seed in enumerate((1, 1, 2)):
        res, _ = _run(monkeypatch, seed=seed)
        paths.append(tmp_path / f"r{i}.csv")
        rep.write_csv(res.rows, paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    header, first = paths[0].read_text().splitlines()[:2]
    assert header == ",".join(COLUMNS) and first.startswith("cp,seen,s1,")


def test_report_and_plots_written(monkeypatch, tmp_path):
    res, _ = _run(monkeypatch)
    res.model = "fake"
    tgts = rep.targets(res, EvalConfig().targets)
    md = rep.markdown(res, tgts)
    assert "## cp" in md and "### unseen" in md and "| icwm | err |" in md and "## Targets" in md
    assert "| oracle (no demos) | err | 0 | 0 | 0 | 0 |" in md
    names = [t["target"] for t in tgts]
    assert "cp unseen loss (NMSE dB)" in names and "pre_sr sum rate / WMMSE-20" in names
    assert [t["status"] for t in tgts if t["target"].startswith("pre_sr")] == ["not evaluated"]
    mono = [t for t in tgts if "improves with k" in t["target"]]
    assert len(mono) == 2 and all(t["status"] == "PASS" and t["value"] > 0 for t in mono)
    (png,) = plot_all(res, tmp_path)
    assert png.name == "cp.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def _row(task, family, method, k, metric, value, system="x", n=10):
    return dict(zip(COLUMNS, (task, family, system, method, k, metric, value, n)))


def test_full_csi_tasks_are_checked_flat_in_k():
    """pre_sr / pre_mm / det: demonstrations carry no information on the query; the check is 'no worse with k'."""
    cfg = EvalConfig().targets
    flat = [_row("det", "seen", MODEL, k, "ser", v) for k, v in ((0, 0.100), (1, 0.101), (16, 0.0995))]
    worse = [_row("det", "unseen", MODEL, k, "ser", v) for k, v in ((0, 0.100), (1, 0.100), (16, 0.105))]
    db = [_row("pre_mm", "seen", MODEL, k, "min_sinr_db", v) for k, v in ((0, 20.0), (1, 19.95), (16, 19.8))]
    res = EvalResult(flat + worse + db, {"seen": [], "unseen": []}, [0, 1, 16], [0, 1, 16])
    t = {(x["target"].split()[0], x["scope"].split(",")[0]): x for x in rep.monotone_targets(res, cfg)}
    assert t["det", "seen"]["status"] == "PASS" and t["det", "seen"]["value"] == pytest.approx(-0.001)
    assert t["det", "unseen"]["status"] == "FAIL" and t["det", "unseen"]["threshold"] == pytest.approx(-0.002)
    assert t["pre_mm", "seen"]["status"] == "FAIL" and t["pre_mm", "seen"]["value"] == pytest.approx(-0.2)
    assert all("does not degrade" in x["target"] for x in t.values())


def test_targets_computed_from_rows():
    big = SystemConfig(name="zd", array=ArrayConfig("upa", 16, 8), num_users=4)
    small = SystemConfig(name="d44", array=ArrayConfig("ula", 1, 4), num_users=4)
    rows = [_row("pre_sr", "setups", MODEL, 16, "sum_rate", 9.8, "zd"), _row("pre_sr", "setups", "wmmse", None,
            "sum_rate", 10.0, "zd"), _row("det", "setups", MODEL, 16, "ser", 0.03, "d44"),
            _row("det", "setups", "ml", None, "ser", 0.013, "d44"), _row("cp", "setups", MODEL, 16, "nmse", 0.01),
            _row("pre_sr", "seen", MODEL, 16, "rate_ratio", 0.97), _row("pre_sr", "unseen", MODEL, 16, "rate_ratio", 0.96)]
    res = EvalResult(rows, {"seen": [], "unseen": [], "setups": [big, small]}, [0, 16], [0, 16])
    t = {x["target"]: x for x in rep.targets(res, EvalConfig().targets)}
    sr = t["pre_sr sum rate / WMMSE-20"]
    assert sr["value"] == pytest.approx(0.98) and sr["gap"] == pytest.approx(-0.01) and sr["status"] == "FAIL"
    det = t["det SER / ML SER"]
    assert det["value"] == pytest.approx(0.03 / 0.013) and det["status"] == "FAIL" and "Nt=4, K=4" in det["scope"]
    cp = t["cp NMSE (dB of the mean)"]
    assert cp["value"] == pytest.approx(-20.0) and cp["gap"] == pytest.approx(5.0) and cp["status"] == "PASS"
    un = t["pre_sr unseen loss (fraction of WMMSE sum rate)"]
    assert un["value"] == pytest.approx(0.01) and un["status"] == "PASS"
    assert t["pre_mm gap to optimal min SINR (dB)"]["status"] == "not evaluated"


@pytest.mark.parametrize("override,field", [("ks=[-1]", "ks"), ("tasks=[nope]", "tasks"), ("episodes=0", "episodes"),
                                            ("device=gpu", "device"), ("bogus=1", "bogus"),
                                            ("targets.rate_ratio=0", "targets.rate_ratio"),
                                            ("families=[seen,seen]", "families"),
                                            ("targets.family=sen", "targets.family")])
def test_config_errors_name_the_field(override, field):
    with pytest.raises(ValueError, match=field):
        load_config(EvalConfig, DEBUG, [override])


def test_missing_family_file_names_the_field(tmp_path):
    cfg = load_config(EvalConfig, DEBUG, [f"systems_dir={tmp_path}"])
    with pytest.raises(ValueError, match="families"):
        load_families(cfg)


def test_launch_evaluate_debug_with_random_model(tmp_path):
    """Real tasks and channels, a randomly initialised debug model, the debug eval config."""
    from icwm.infer import save_pretrained
    from icwm.model import ModelConfig, build_model
    spec = importlib.util.spec_from_file_location("evaluate", ROOT / "launch" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mcfg = ModelConfig.flavour("debug", k_max=2)
    save_pretrained(build_model(mcfg), mcfg, tmp_path / "model")
    out = tmp_path / "out"
    assert mod.main(["--config", str(DEBUG), f"model={tmp_path / 'model'}", f"out_dir={out}",
                     f"systems_dir={ROOT / 'configs' / 'systems'}", "ks=[0,1,2,4]", "episodes=3"]) == 0
    assert {p.name for p in out.iterdir()} == {"results.csv", "report.md", "config.yaml", "pre_sr.png", "det.png"}
    import csv
    rows = list(csv.DictReader(open(out / "results.csv")))
    base = [r for r in rows if r["method"] in ("wmmse", "zf", "rzf", "mrt", "ml", "lmmse", "kbest")]
    assert base and all(math.isfinite(float(r["value"])) for r in base)
    assert {r["k"] for r in rows if r["method"] == MODEL} == {"0", "1", "2"}          # capped at k_max = 2
    assert {r["family"] for r in rows if r["task"] == "pre_sr"} == {"debug", "setups"}
    assert {r["family"] for r in rows if r["task"] == "det"} == {"debug"}
    wm = [r for r in rows if r["method"] == "wmmse" and r["metric"] == "rate_ratio"]
    assert all(float(r["value"]) == pytest.approx(1.0, abs=1e-4) for r in wm)
    assert "model=" not in (out / "config.yaml").read_text() and "episodes: 3" in (out / "config.yaml").read_text()
    assert "## Targets" in (out / "report.md").read_text()


def test_bench_infer_quick_rows():
    from icwm.bench import infer
    rows = {r["name"]: r for r in infer.run(quick=True)}
    assert set(rows) == {"icwm_pre_sr_batch_time", "wmmse20_batch_time", "icwm_vs_wmmse20_speedup",
                         "icwm_vs_wmmse20_sum_rate_ratio", "icwm_single_episode_latency"} | set(CACHED_ROWS) | {
                         "icwm_refined_pre_sr_batch_time", "icwm_refined_vs_wmmse20_sum_rate_ratio"}
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in rows.values())
    sp = rows["icwm_vs_wmmse20_speedup"]
    assert sp["value"] == pytest.approx(rows["wmmse20_batch_time"]["value"] / rows["icwm_pre_sr_batch_time"]["value"])
    assert sp["target"] == ">= 0.25" and sp["met"] == (sp["value"] >= 0.25)      # the CPU target (GPU: >= 20)
    assert sp["weights"] in ("trained", "random init")
    assert 0 < rows["icwm_vs_wmmse20_sum_rate_ratio"]["value"] < 1.5
    assert rows["icwm_refined_vs_wmmse20_sum_rate_ratio"]["value"] > 0.99   # WMMSE-100 from the read-out


CACHED_ROWS = ("icwm_cached_pre_sr_batch_time", "icwm_uncached_shared_batch_time", "icwm_cached_vs_uncached_speedup",
               "icwm_cached_vs_wmmse20_speedup", "icwm_cached_vs_wmmse20_sum_rate_ratio",
               "icwm_cached_single_query_latency")


def test_bench_infer_cached_context_rows_with_a_model_directory(tmp_path):
    """The serving rows (queries against one cached context) run with any model directory; the cached precoders
    equal the uncached forward pass's."""
    from icwm.bench import infer
    from icwm.infer import save_pretrained
    from icwm.model import ModelConfig, build_model
    cfg = ModelConfig.flavour("debug")
    path = save_pretrained(build_model(cfg), cfg, tmp_path / "m")
    rows = {r["name"]: r for r in infer.run(quick=True, model=str(path))}
    assert set(CACHED_ROWS) <= set(rows) and all(rows[n]["weights"] == "trained" for n in CACHED_ROWS)
    assert all(math.isfinite(rows[n]["value"]) and rows[n]["value"] > 0 for n in CACHED_ROWS)
    sp = rows["icwm_cached_vs_uncached_speedup"]
    assert sp["value"] == pytest.approx(rows["icwm_uncached_shared_batch_time"]["value"]
                                        / rows["icwm_cached_pre_sr_batch_time"]["value"])
    assert rows["icwm_cached_vs_wmmse20_speedup"]["value"] == pytest.approx(
        rows["wmmse20_batch_time"]["value"] / rows["icwm_cached_pre_sr_batch_time"]["value"])
    assert sp["w_max_abs_diff"] < 1e-4 and 0 < rows["icwm_cached_vs_wmmse20_sum_rate_ratio"]["value"] < 1.5


def test_task_prefix_selects_the_task_family_files():
    from icwm.eval.config import EvalConfig
    from icwm.eval.runner import load_families, units
    cfg = EvalConfig(model="none", tasks=["det", "pre_sr"], families=["seen", "unseen"],
                     task_prefix={"det": "det"})
    fams = load_families(cfg)
    det = dict(units(cfg, fams, "det"))
    pre = dict(units(cfg, fams, "pre_sr"))
    assert all(s.name.startswith("det_") for s in det["seen"] + det["unseen"])
    assert [s.name for s in pre["seen"]] == [s.name for s in fams["seen"]]
    with pytest.raises(ValueError, match="task_prefix"):
        EvalConfig(model="none", task_prefix={"nope": "x"})


def test_debug_model_runs_on_latent_episodes_and_its_snr_reaches_the_metric():
    """Latent pre_sr / det: the model reads the episodes as they are (the stated nominal prior_*, never the truth
    latent_*; the hidden inputs absent), det runs without its channel, and pre_sr's metric renders lam_p at the model's own SNR estimate."""
    from icwm.eval.runner import evaluate_chunk, model_inputs, model_query_pred, query
    from icwm.model import ModelConfig, build_model
    torch.manual_seed(0)
    # the read-out alone: the refined lam_p of an untrained probe's low SNR can put all power on one user, whose
    # precoder is then the same at any design SNR
    model = build_model(ModelConfig.flavour("debug", precoding_refine=False)).eval()
    system = SystemConfig(name="lat", form="latent", array=ArrayConfig(kind="ula", cols=4), num_users=2,
                          snr_db=[0.0, 20.0])
    for t in ("pre_sr", "det"):
        task = icwm.tasks.get(t)
        sample = task.generate(system, 2, 4, torch.Generator().manual_seed(1))
        inputs = model_inputs(task, sample)
        nominal = {key for key in sample if key.startswith("prior_")}            # what blind knows: passed
        assert nominal and set(inputs) == set(task.X_KEYS) - set(task.LATENT_X) | set(task.Y_KEYS) | nominal
        pred = model_query_pred(model, task, sample, 3, torch.device("cpu"))
        assert all(v.shape[0] == 2 and bool(torch.isfinite(v).all()) for v in pred.values())
        assert pred["latent_hat_snr_db"].shape == (2,)
        values: dict = {}
        assert evaluate_chunk(task, sample, [0, 3], model, [0, 3], torch.device("cpu"), values) is None
        assert (MODEL, 0) in values and (MODEL, 3) in values
    task = icwm.tasks.get("pre_sr")
    sample = task.generate(system, 2, 4, torch.Generator().manual_seed(1))
    q, pred = query(sample), model_query_pred(model, task, sample, 3, torch.device("cpu"))
    assert torch.equal(pred["snr_db"], pred["latent_hat_snr_db"])
    metric = task.metric
    at = lambda snr: metric({"lam_p": pred["lam_p"], "snr_db": torch.full((2,), snr)}, q)["sum_rate"]  # noqa: E731
    assert not torch.allclose(at(-30.0), at(40.0))            # the design SNR matters ...
    torch.testing.assert_close(metric(pred, q)["sum_rate"], metric({**pred, "latent_hat_snr_db": pred["snr_db"] + 9}, q)
                               ["sum_rate"])                    # ... and it is the model's snr_db, not the probe key


def test_probe_error_rows_on_latent_episodes_only():
    """The model's rows carry |probe estimate - drawn latent| on latent episodes, and nothing on given-form ones."""
    from icwm.eval.runner import evaluate_chunk, model_query_pred, query
    from icwm.model import ModelConfig, build_model
    torch.manual_seed(0)
    model = build_model(ModelConfig.flavour("debug")).eval()
    task = icwm.tasks.get("pre_sr")
    for form in ("latent", "given"):
        system = SystemConfig(name="s", form=form, array=ArrayConfig(kind="ula", cols=4), num_users=2,
                              snr_db=[0.0, 20.0])
        sample = task.generate(system, 3, 4, torch.Generator().manual_seed(1))
        values: dict = {}
        evaluate_chunk(task, sample, [2], model, [2], torch.device("cpu"), values)
        if form == "given":
            assert not any(n.startswith("probe_err_") for n in values[(MODEL, 2)])
            continue
        hat = model_query_pred(model, task, sample, 2, torch.device("cpu"))["latent_hat_snr_db"]
        want = (hat - query(sample)["latent_snr_db"]).abs()
        torch.testing.assert_close(values[(MODEL, 2)]["probe_err_snr_db"][0], want)
        assert not any(n.startswith("probe_err_") for (m, _), v in values.items() if m != MODEL for n in v)
