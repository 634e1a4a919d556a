"""Few-shot inference: save/load round trip, natural outputs, input validation, the CLI."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import icwm.infer as infer
from icwm.infer import FewShotModel, save_pretrained
from icwm.model import ModelConfig, build_model
from icwm.wireless import precoding

ROOT = Path(__file__).resolve().parents[1]


def _c(*shape: int, rng: np.random.Generator) -> np.ndarray:
    return ((rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)).astype(np.complex64)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    cfg = ModelConfig.flavour("debug", k_max=6, max_users=8)
    return save_pretrained(build_model(cfg), cfg, tmp_path_factory.mktemp("m") / "icwm-debug", {"step": 7})


@pytest.fixture(scope="module")
def fsm(saved) -> FewShotModel:
    return FewShotModel.from_pretrained(saved)


def _pre(k: int, K: int = 3, N: int = 6, seed: int = 0, lead: tuple = ()) -> tuple[dict, dict]:
    r = np.random.default_rng(seed)
    lam = r.random(lead + (k, K, 2)).astype(np.float32)
    demos = {"h": _c(*lead, k, K, N, rng=r), "snr_db": r.uniform(0, 20, lead + (k,)).astype(np.float32),
             "lam_p": lam / lam.sum(-2, keepdims=True)}
    query = {"h": _c(*lead, K, N, rng=r), "snr_db": np.float32(r.uniform(0, 20, lead)) if lead else np.float32(10.0)}
    return demos, query


def test_save_load_round_trip(saved, fsm, tmp_path):
    files = sorted(p.name for p in saved.iterdir())
    assert files == ["config.yaml", "metadata.json", "model.safetensors"]
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    meta = json.loads((saved / "metadata.json").read_text())
    assert meta["step"] == 7 and meta["parameters"] == sum(p.numel() for p in fsm.model.parameters())
    again = save_pretrained(fsm.model, fsm.cfg, saved.parent / "copy")
    save_pretrained(fsm.model, fsm.cfg, again)  # overwriting an existing directory works
    other = FewShotModel.from_pretrained(again)
    assert other.cfg == fsm.cfg
    for (ka, a), (kb, b) in zip(fsm.model.state_dict().items(), other.model.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    demos, query = _pre(3)
    assert np.array_equal(other.predict("pre_sr", demos, query)["lam_p"], fsm.predict("pre_sr", demos, query)["lam_p"])


def test_missing_model_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.setattr(infer, "SHIPPED", tmp_path / "icwm-small")
    with pytest.raises(FileNotFoundError, match="launch/pretrain.py"):
        FewShotModel.from_pretrained()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.yaml").write_text("d_model: 32\nn_heads: 2\n")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        FewShotModel.from_pretrained(tmp_path / "x")


def test_overrides_change_inference_options_and_reject_unknown_fields(saved, fsm):
    """``precoding_refine: False`` gives the read-out alone (same weights); the default is the refined answer."""
    plain = FewShotModel.from_pretrained(saved, overrides={"precoding_refine": False})
    assert fsm.cfg.precoding_refine and not plain.cfg.precoding_refine
    demos, query = _pre(3, K=3, N=3)
    h, p = torch.as_tensor(query["h"]), torch.tensor(10.0)
    rate = lambda m: float(precoding.sum_rate(h, torch.as_tensor(m.predict("pre_sr", demos, query)["W"])))  # noqa: E731
    assert rate(fsm) > rate(plain) - 1e-4
    assert rate(fsm) == pytest.approx(float(precoding.sum_rate(h, precoding.wmmse(h, p, iters=100))), rel=1e-3)
    with pytest.raises(ValueError, match="overrides"):
        FewShotModel.from_pretrained(saved, overrides={"precoding_refin": False})


def test_precoding_outputs_match_the_forward_pass_and_the_power_budget(fsm):
    demos, query = _pre(4)
    out = fsm.predict("pre_sr", demos, query)
    assert isinstance(out["W"], np.ndarray) and out["W"].shape == (6, 3) and out["lam_p"].shape == (3, 2)
    np.testing.assert_allclose(out["lam_p"].sum(0), [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(np.sum(np.abs(out["W"]) ** 2), 10.0, rtol=1e-4)  # ||W||_F^2 = p = 10 dB
    batch = {"task": "pre_sr", "k": 4, "h": torch.from_numpy(np.concatenate([demos["h"], query["h"][None]]))[None],
             "snr_db": torch.tensor(np.append(demos["snr_db"], query["snr_db"]))[None],
             "lam_p": torch.cat([torch.from_numpy(demos["lam_p"]), torch.zeros(1, 3, 2)])[None]}
    with torch.no_grad():
        ref = fsm.model(batch)["lam_p"][0, -1]
    np.testing.assert_allclose(out["lam_p"], ref.numpy(), rtol=1e-6)


def test_batch_equals_single_episodes_and_torch_in_torch_out(fsm):
    demos, query = _pre(2, lead=(2,), seed=4)
    out = fsm.predict("pre_mm", {k: torch.from_numpy(v) for k, v in demos.items()},
                      {k: torch.from_numpy(np.asarray(v)) for k, v in query.items()})
    assert torch.is_tensor(out["lam_p"]) and out["lam_p"].shape == (2, 3, 2)
    for b in range(2):
        one = fsm.predict("pre_mm", {k: v[b] for k, v in demos.items()}, {k: v[b] for k, v in query.items()})
        np.testing.assert_allclose(one["lam_p"], out["lam_p"][b].numpy(), rtol=1e-5, atol=1e-6)


def _episode(task: str, k: int, r: np.random.Generator) -> tuple[dict, dict, dict]:
    """(demos, query, expected output shapes) of a natural-shape episode."""
    f = lambda *s: r.uniform(0, 20, s).astype(np.float32)  # noqa: E731
    xs = {"ce": {"h_ls": _c(1, 3, 5, rng=r)}, "cp": {"h_hist": _c(16, 8, 2, rng=r)}, "pf": {"h_ul": _c(1, 8, 4, rng=r)},
          "bf": {"h_sub6": _c(16, 4, rng=r)}, "de": {"h_sub6": _c(16, 4, rng=r)}, "pe": {"h_sub6": _c(16, 4, rng=r)}}[task]
    ys = {"ce": {"h": _c(k, 1, 12, 5, rng=r)}, "cp": {"h_fut": _c(k, 4, 8, 2, rng=r)}, "pf": {"h_dl": _c(k, 1, 8, 4, rng=r)},
          "bf": {"beam": r.integers(0, 256, k)}, "de": {"distance_m": f(k) * 10}, "pe": {"pathloss_db": f(k) + 90}}[task]
    query = {**xs, **({"snr_db": np.float32(12.0)} if task in ("ce", "cp", "pf") else {})}
    demos = {**{key: np.stack([v] * k) for key, v in query.items()}, **ys} if k else {}
    shapes = {"ce": {"h": (1, 12, 5)}, "cp": {"h_fut": (4, 8, 2)}, "pf": {"h_dl": (1, 8, 4)},
              "bf": {"beam": (), "beam_scores": (256,)}, "de": {"distance_m": ()}, "pe": {"pathloss_db": ()}}[task]
    estimate = {"bf": "panel_offset_deg", "de": "power_offset_db", "pe": "power_offset_db"}.get(task, "snr_db")
    return demos, query, {**shapes, f"estimated_{estimate}": ()}


@pytest.mark.parametrize("task", ["ce", "cp", "pf", "bf", "de", "pe"])
@pytest.mark.parametrize("k", [0, 3])
def test_natural_outputs_for_every_task(fsm, task: str, k: int):
    demos, query, shapes = _episode(task, k, np.random.default_rng(k))
    out = fsm.predict(task, demos if k else None, query)
    assert {key: v.shape for key, v in out.items()} == shapes
    if task == "bf":
        assert out["beam"] == out["beam_scores"].argmax() and abs(out["beam_scores"].sum() - 1) < 1e-5


@pytest.mark.parametrize("task", ["ce", "cp", "pf", "bf", "de", "pe"])
def test_natural_outputs_are_the_forward_pass_at_the_query(fsm, task: str):
    """predict's outputs are the model's predictions at the query's position: ce / cp / pf times the scale their
    inputs were divided by (channels here 10x the unit power, so the scale matters), bf's scores the softmax of its
    logits, de / pe the regression itself."""
    demos, query, _ = _episode(task, 3, np.random.default_rng(5))
    if task in ("ce", "cp", "pf"):
        x = next(iter(k for k in query if k.startswith("h_")))
        query, demos = {**query, x: query[x] * 10}, {**demos, x: demos[x] * 10}
    out = fsm.predict(task, demos, query)
    batch, _, _, scale = fsm.episode(task, demos, query)
    with torch.no_grad():
        pred = {k: v[0, -1] for k, v in fsm.model(batch).items()}
    if task == "bf":
        np.testing.assert_allclose(out["beam_scores"], torch.softmax(pred["beam_logits"], -1).numpy(), rtol=1e-5)
        return
    key = {"ce": "h", "cp": "h_fut", "pf": "h_dl", "de": "distance_m", "pe": "pathloss_db"}[task]
    ref = pred[key].numpy() * float(scale[0])
    assert task in ("de", "pe") or float(scale[0]) > 3.0
    np.testing.assert_allclose(out[key], ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_detection_symbols_and_hard_decisions(fsm):
    r = np.random.default_rng(1)
    demos = {"h": np.stack([_c(4, 2, rng=r)] * 3), "y": _c(3, 5, 4, rng=r), "snr_db": np.full(3, 15, np.float32),
             "x": _c(3, 5, 2, rng=r)}
    out = fsm.predict("det", demos, {"h": demos["h"][0], "y": _c(5, 4, rng=r), "snr_db": np.float32(15)})
    from icwm.wireless.detection import qam16
    const = qam16().numpy()
    assert out["x"].shape == (5, 2) and out["x_idx"].shape == (5, 2)
    np.testing.assert_array_equal(out["x_idx"], np.abs(out["x"][..., None] - const).argmin(-1))


@pytest.mark.parametrize("k", [0, 3])
def test_latent_form_precoding_runs_at_its_own_snr_estimate(fsm, k: int):
    demos, query = _pre(k)
    demos = {key: v for key, v in demos.items() if key != "snr_db"} if k else None
    out = fsm.predict("pre_sr", demos, {"h": query["h"]})
    assert {key: v.shape for key, v in out.items()} == {"lam_p": (3, 2), "W": (6, 3), "estimated_snr_db": ()}
    assert all(np.isfinite(v).all() for v in out.values())
    np.testing.assert_allclose(out["lam_p"].sum(0), [1.0, 1.0], rtol=1e-5)
    power = np.sum(np.abs(out["W"]) ** 2)                     # designed at, with the power of, the estimated SNR
    np.testing.assert_allclose(power, 10.0 ** (out["estimated_snr_db"] / 10.0), rtol=1e-4)
    given = fsm.predict("pre_sr", {**demos, "snr_db": np.full(k, 10.0, np.float32)} if k else None,
                        {**query, "snr_db": np.float32(10.0)})
    assert not np.allclose(given["lam_p"], out["lam_p"])       # the missing-SNR embedding, not a fed default


def test_latent_form_batch_equals_single_episodes(fsm):
    demos, query = _pre(2, lead=(2,), seed=5)
    demos.pop("snr_db")
    out = fsm.predict("pre_mm", demos, {"h": query["h"]})
    assert out["estimated_snr_db"].shape == (2,) and out["W"].shape == (2, 6, 3)
    for b in range(2):
        one = fsm.predict("pre_mm", {key: v[b] for key, v in demos.items()}, {"h": query["h"][b]})
        np.testing.assert_allclose(one["estimated_snr_db"], out["estimated_snr_db"][b], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(one["lam_p"], out["lam_p"][b], rtol=1e-5, atol=1e-6)


def test_latent_form_detection_runs_without_the_channel(fsm):
    r = np.random.default_rng(2)
    demos = {"y": _c(3, 5, 4, rng=r), "x": _c(3, 5, 2, rng=r)}
    out = fsm.predict("det", demos, {"y": _c(5, 4, rng=r)})
    assert {key: v.shape for key, v in out.items()} == {"x": (5, 2), "x_idx": (5, 2), "estimated_snr_db": ()}
    assert all(np.isfinite(v).all() for v in out.values())
    with pytest.raises(ValueError, match="demos: expected at least one demonstration for det without h"):
        fsm.predict("det", None, {"y": _c(5, 4, rng=r)})          # k = 0: the number of users is unknown


@pytest.mark.parametrize("task", ["ce", "cp", "pf"])
def test_latent_form_grid_tasks(fsm, task: str):
    demos, query, shapes = _episode(task, 3, np.random.default_rng(3))
    demos.pop("snr_db")
    out = fsm.predict(task, demos, {key: v for key, v in query.items() if key != "snr_db"})
    assert {key: v.shape for key, v in out.items()} == shapes
    assert all(np.isfinite(v).all() for v in out.values())


MIXED = [  # (task, demos, query) with a hidden input given in some pairs only; the field the error names
    ("pre_sr", lambda d, q: ({key: v for key, v in d.items() if key != "snr_db"}, q), "query['snr_db']"),
    ("pre_sr", lambda d, q: (d, {"h": q["h"]}), "demos['snr_db']"),
    ("det", lambda d, q: (d, {key: v for key, v in q.items() if key != "h"}), "demos['h']"),
    ("det", lambda d, q: ({key: v for key, v in d.items() if key != "snr_db"}, q), "query['snr_db']"),
]


@pytest.mark.parametrize("task,mutate,field", MIXED)
def test_a_hidden_input_given_in_some_pairs_only_is_rejected(fsm, task, mutate, field):
    if task == "det":
        r = np.random.default_rng(1)
        demos = {"h": _c(3, 4, 2, rng=r), "y": _c(3, 5, 4, rng=r), "snr_db": np.full(3, 15, np.float32),
                 "x": _c(3, 5, 2, rng=r)}
        query = {"h": _c(4, 2, rng=r), "y": _c(5, 4, rng=r), "snr_db": np.float32(15)}
    else:
        demos, query = _pre(3)
    d, q = mutate(demos, query)
    with pytest.raises(ValueError, match=r"must be omitted from the query and from every demonstration") as info:
        fsm.predict(task, d, q)
    assert str(info.value).startswith(field)


BAD = [  # (description, mutate(task, demos, query) -> (task, demos, query), field named in the error)
    ("unknown task", lambda d, q: ("foo", d, q), "task"),
    ("missing query key", lambda d, q: ("pre_sr", d, {"h": q["h"]}), "query"),
    ("extra query key", lambda d, q: ("pre_sr", d, {**q, "lam_p": d["lam_p"][0]}), "query"),
    ("missing demo label", lambda d, q: ("pre_sr", {"h": d["h"], "snr_db": d["snr_db"]}, q), "demos"),
    ("real channel", lambda d, q: ("pre_sr", d, {**q, "h": q["h"].real.copy()}), "query['h']"),
    ("NaN channel", lambda d, q: ("pre_sr", d, {**q, "h": np.where(np.eye(3, 6) > 0, np.nan, q["h"]).astype(np.complex64)}),
     "query['h']"),
    ("inf snr", lambda d, q: ("pre_sr", {**d, "snr_db": d["snr_db"] * np.inf}, q), "demos['snr_db']"),
    ("wrong ndim", lambda d, q: ("pre_sr", d, {**q, "h": q["h"][0]}), "query['h']"),
    ("demo Nt disagrees", lambda d, q: ("pre_sr", {**d, "h": d["h"][..., :5]}, q), "demos['h']"),
    ("demo counts disagree", lambda d, q: ("pre_sr", {**d, "snr_db": d["snr_db"][:2]}, q), "demos"),
    ("k above k_max", lambda d, q: ("pre_sr", {k: np.concatenate([v] * 3) for k, v in d.items()}, q), "k_max"),
    ("K above max_users", lambda d, q: ("pre_sr", None, {**q, "h": np.ones((9, 12), np.complex64)}), "max_users"),
    ("lam_p shape", lambda d, q: ("pre_sr", {**d, "lam_p": d["lam_p"][:, :2]}, q), "lam_p"),
    ("string input", lambda d, q: ("pre_sr", d, {**q, "h": "abc"}), "query['h']"),
    ("integer snr dtype ok, complex snr not", lambda d, q: ("pre_sr", d, {**q, "snr_db": np.complex64(1)}), "snr_db"),
    ("det rx mismatch", lambda d, q: ("det", None, {"h": q["h"][:, :2], "y": np.ones((4, 5), np.complex64),
                                                    "snr_db": np.float32(3)}), "rx"),
    ("ce pilots vs band", lambda d, q: ("ce", {"h_ls": np.ones((1, 1, 2, 2), np.complex64), "snr_db": np.ones(1, np.float32),
                                               "h": np.ones((1, 1, 12, 2), np.complex64)},
                                        {"h_ls": np.ones((1, 2, 2), np.complex64), "snr_db": np.float32(1)}), "h_ls"),
    ("beam out of range", lambda d, q: ("bf", {"h_sub6": np.ones((1, 8, 2), np.complex64), "beam": np.array([256])},
                                        {"h_sub6": np.ones((8, 2), np.complex64)}), "beam"),
    ("batch size mismatch", lambda d, q: ("pre_sr", None, {"h": np.ones((2, 3, 6), np.complex64),
                                                           "snr_db": np.ones(3, np.float32)}), "batch size"),
]


@pytest.mark.parametrize("desc,mutate,field", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_field(fsm, desc, mutate, field):
    demos, query = _pre(3)
    task, d, q = mutate(demos, query)
    with pytest.raises(ValueError, match=field.replace("[", "\\[").replace("]", "\\]")):
        fsm.predict(task, d, q)


def test_cli_round_trip_and_bad_input(saved, fsm, tmp_path):
    spec = importlib.util.spec_from_file_location("fewshot_cli", ROOT / "launch" / "fewshot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    demos, query = _pre(2)
    np.savez(tmp_path / "d.npz", **demos)
    np.savez(tmp_path / "q.npz", **query)
    argv = ["--task", "pre_sr", "--demos", str(tmp_path / "d.npz"), "--query", str(tmp_path / "q.npz"),
            "--model", str(saved)]
    assert cli.main(argv + ["--out", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as o:
        np.testing.assert_allclose(o["W"], fsm.predict("pre_sr", demos, query)["W"], rtol=1e-6)
    assert cli.main(["--task", "det"] + argv[2:] + ["--out", str(tmp_path / "bad.npz")]) == 2
    assert not (tmp_path / "bad.npz").exists()


def test_cli_latent_form_files_without_the_snr(saved, fsm, tmp_path):
    spec = importlib.util.spec_from_file_location("fewshot_cli", ROOT / "launch" / "fewshot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    demos, query = _pre(2)
    demos.pop("snr_db")
    np.savez(tmp_path / "d.npz", **demos)
    np.savez(tmp_path / "q.npz", h=query["h"])
    argv = ["--task", "pre_sr", "--demos", str(tmp_path / "d.npz"), "--query", str(tmp_path / "q.npz"),
            "--model", str(saved), "--out", str(tmp_path / "o.npz")]
    assert cli.main(argv) == 0
    ref = fsm.predict("pre_sr", demos, {"h": query["h"]})
    with np.load(tmp_path / "o.npz") as o:
        assert set(o.files) == {"lam_p", "W", "estimated_snr_db"}
        np.testing.assert_allclose(o["W"], ref["W"], rtol=1e-6)
    assert cli.main(argv + ["--nominal", "snr_db=10"]) == 2            # this model reads no nominal value
    for bad in ("snr_db", "snr_db=ten", "=3"):
        assert cli.main(argv + ["--nominal", bad]) == 2


def _det(k: int, r: np.random.Generator) -> tuple[dict, dict]:
    demos = {"h": _c(k, 4, 2, rng=r), "y": _c(k, 5, 4, rng=r), "snr_db": np.full(k, 15, np.float32),
             "x": _c(k, 5, 2, rng=r)}
    return demos, {"h": _c(4, 2, rng=r), "y": _c(5, 4, rng=r), "snr_db": np.float32(15)}


def _shared(task: str, k: int, latent: bool = False, n_q: int = 3) -> tuple[dict, list[dict]]:
    """One set of demonstrations [k, ...] and n_q queries [...] of the same shapes (latent: the hidden inputs left
    out of both)."""
    if task in ("pre_sr", "pre_mm"):
        make = lambda s: _pre(k, seed=s)  # noqa: E731
    elif task == "det":
        make = lambda s: _det(k, np.random.default_rng(s))  # noqa: E731
    else:                               # _episode's demos repeat its query: draw distinct demo inputs
        make = lambda s: _episode(task, k, np.random.default_rng(s))[:2]  # noqa: E731
    demos, queries = make(0)[0], [make(s)[1] for s in range(1, n_q + 1)]
    if task in ("ce", "cp", "pf", "bf", "de", "pe") and k:
        demos = {**demos, **_stack([make(100 + j)[1] for j in range(k)])}
    if latent:
        hidden = infer.tasks.spec(task).latent_x
        demos = {key: v for key, v in demos.items() if key not in hidden}
        queries = [{key: v for key, v in q.items() if key not in hidden} for q in queries]
    return demos, queries


def _stack(queries: list[dict]) -> dict:
    return {key: np.stack([np.asarray(q[key]) for q in queries]) for key in queries[0]}


MANY = [(t, k, False) for t in infer.tasks.TASKS for k in (0, 3)] + \
    [(t, 3, True) for t in ("pre_sr", "det", "ce", "cp", "pf")] + [("pre_mm", 0, True)]


@pytest.mark.parametrize("task,k,latent", MANY)
def test_predict_many_equals_predict_per_query(fsm, task: str, k: int, latent: bool):
    demos, queries = _shared(task, k, latent)
    many = fsm.predict_many(task, _stack(queries), demos=demos if k else None)
    for i, query in enumerate(queries):
        one = fsm.predict(task, demos if k else None, query)
        assert set(many) == set(one)
        for key, v in one.items():
            assert many[key].shape == (len(queries),) + v.shape and many[key].dtype == v.dtype
            np.testing.assert_allclose(many[key][i], v, rtol=1e-5, atol=1e-5, err_msg=f"{task} {key} query {i}")


def test_a_context_serves_many_batches_and_single_queries(fsm):
    demos, queries = _shared("pre_sr", 4, n_q=4)
    ctx = fsm.context("pre_sr", {key: torch.from_numpy(np.asarray(v)) for key, v in demos.items()})
    assert ctx.k == 4 and ctx.cache.k == 4
    all4 = fsm.predict_many(ctx, _stack(queries))
    assert isinstance(all4["W"], np.ndarray) and all4["W"].shape == (4, 6, 3)
    two = fsm.predict_many(ctx, _stack(queries[2:]))
    one = fsm.predict_many(ctx, queries[1])                                # one query: unbatched outputs
    np.testing.assert_allclose(two["W"], all4["W"][2:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one["W"], all4["W"][1], rtol=1e-5, atol=1e-6)


def test_grid_scale_is_the_demos_and_outputs_scale_with_the_channel(fsm):
    """ce / cp / pf are normalised by the demonstrations' inputs' RMS (independent of the query, so a context is
    normalised once): predict(c x) = c predict(x) for a real gain c."""
    demos, queries = _shared("cp", 3)
    ref = fsm.predict("cp", demos, queries[0])["h_fut"]
    c = np.float32(30.0)                               # a real gain (the scale is the RMS, not a phase)
    scaled = fsm.predict("cp", {**demos, "h_hist": demos["h_hist"] * c, "h_fut": demos["h_fut"] * c},
                         {**queries[0], "h_hist": queries[0]["h_hist"] * c})["h_fut"]
    np.testing.assert_allclose(scaled, c * ref, rtol=1e-4, atol=1e-4 * np.abs(c * ref).max())
    ctx = fsm.context("cp", demos)
    assert ctx.scale is not None and ctx.scale.shape == (1,)
    want = np.sqrt(np.mean(np.abs(demos["h_hist"].astype(np.complex128)) ** 2))
    assert float(ctx.scale) == pytest.approx(want, rel=1e-6)


def test_predict_many_rejects_what_predict_rejects(fsm):
    demos, queries = _shared("pre_sr", 3)
    ctx = fsm.context("pre_sr", demos)
    with pytest.raises(ValueError, match=r"must be omitted from the query and from every demonstration"):
        fsm.predict_many(ctx, {"h": _stack(queries)["h"]})                 # latent query, given-form demos
    with pytest.raises(ValueError, match=r"query\['h'\]: expected per-sample shape"):
        fsm.predict_many(ctx, {**_stack(queries), "h": _stack(queries)["h"][..., :5]})
    with pytest.raises(ValueError, match=r"demos\['h'\]: expected 3 dims"):
        fsm.context("pre_sr", {key: np.stack([v, v]) for key, v in demos.items()})   # a batch of sets
    with pytest.raises(ValueError, match="k_max"):
        fsm.context("pre_sr", {key: np.concatenate([v] * 3) for key, v in demos.items()})
    with pytest.raises(ValueError, match=r"demos: expected exactly the keys"):
        fsm.context("pre_sr", {key: v for key, v in demos.items() if key != "lam_p"})


def test_cli_many_queries_against_one_demos_file(saved, fsm, tmp_path):
    spec = importlib.util.spec_from_file_location("fewshot_cli", ROOT / "launch" / "fewshot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    demos, queries = _shared("pre_sr", 3, n_q=5)
    np.savez(tmp_path / "d.npz", **demos)
    np.savez(tmp_path / "q.npz", **_stack(queries))
    argv = ["--task", "pre_sr", "--demos", str(tmp_path / "d.npz"), "--query", str(tmp_path / "q.npz"),
            "--model", str(saved)]
    assert cli.main(argv + ["--out", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as o:
        assert o["W"].shape == (5, 6, 3)
        for i, query in enumerate(queries):
            np.testing.assert_allclose(o["W"][i], fsm.predict("pre_sr", demos, query)["W"], rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "bad.npz", h=_stack(queries)["h"][..., :5], snr_db=_stack(queries)["snr_db"])
    bad = argv[:5] + [str(tmp_path / "bad.npz")] + argv[6:] + ["--out", str(tmp_path / "o2.npz")]
    assert cli.main(bad) == 2 and not (tmp_path / "o2.npz").exists()


@pytest.fixture(scope="module")
def nominal_fsm() -> FewShotModel:
    """A debug model trained with nominal inputs (``model.nominal``), its nominal embeddings made live."""
    torch.manual_seed(4)
    cfg = ModelConfig.flavour("debug", k_max=6, max_users=8, nominal=True)
    model = build_model(cfg)
    with torch.no_grad():
        for t in model.nominal:
            model.embedders[t].nominal.lin.weight.normal_()
    return FewShotModel(model.eval(), cfg)


@pytest.mark.parametrize("task,k", [("pre_sr", 0), ("pre_sr", 3), ("bf", 3), ("pe", 0)])
def test_a_stated_nominal_is_read_and_predict_many_agrees(nominal_fsm, task: str, k: int):
    """The estimate moves with the stated nominal (the model reads the latent as an offset from it) and the
    cached serving path (context + predict_many) gives predict's answers with the same nominal."""
    name = {"pre_sr": "snr_db", "bf": "panel_offset_deg", "pe": "power_offset_db"}[task]
    demos, queries = _shared(task, k, latent=True)
    demos = demos if k else None
    lo, hi = (nominal_fsm.predict(task, demos, queries[0], nominal={name: v}) for v in (5.0, 15.0))
    assert abs(float(hi["estimated_" + name]) - float(lo["estimated_" + name])) > 1e-3
    many = nominal_fsm.predict_many(task, _stack(queries), demos=demos, nominal={name: 5.0})
    ctx = nominal_fsm.context(task, demos, nominal={name: 5.0})
    again = nominal_fsm.predict_many(ctx, _stack(queries))
    for i, query in enumerate(queries):
        one = nominal_fsm.predict(task, demos, query, nominal={name: 5.0})
        for key, v in one.items():
            np.testing.assert_allclose(many[key][i], v, rtol=1e-5, atol=1e-5, err_msg=f"{task} {key} query {i}")
            np.testing.assert_allclose(again[key][i], v, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nominal,field", [({"snr_db": float("nan")}, "nominal['snr_db']"),
                                           ({"snr_db": [1.0, 2.0]}, "nominal['snr_db']"),
                                           ({"power_offset_db": 1.0}, "nominal"), ("10", "nominal")])
def test_bad_nominal_values_are_named(nominal_fsm, fsm, nominal, field: str):
    demos, query = _pre(2)
    demos = {key: v for key, v in demos.items() if key != "snr_db"}
    with pytest.raises(ValueError, match="^" + re.escape(field)):
        nominal_fsm.predict("pre_sr", demos, {"h": query["h"]}, nominal=nominal)
    with pytest.raises(ValueError, match="nominal"):                  # the given SNR and a nominal one
        nominal_fsm.predict("pre_sr", {**demos, "snr_db": np.zeros(2, np.float32)}, query, nominal={"snr_db": 3.0})
    with pytest.raises(ValueError, match="model.nominal is False"):   # a model that reads no nominal
        fsm.predict("pre_sr", demos, {"h": query["h"]}, nominal={"snr_db": 3.0})
    with pytest.raises(ValueError, match="nominal"):                  # det reads none
        nominal_fsm.predict("det", *_det(2, np.random.default_rng(0)), nominal={"snr_db": 3.0})


def test_cli_states_a_nominal_value(nominal_fsm, tmp_path):
    spec = importlib.util.spec_from_file_location("fewshot_cli", ROOT / "launch" / "fewshot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    saved = save_pretrained(nominal_fsm.model, nominal_fsm.cfg, tmp_path / "m")
    demos, query = _pre(2)
    demos.pop("snr_db")
    np.savez(tmp_path / "d.npz", **demos)
    np.savez(tmp_path / "q.npz", h=query["h"])
    argv = ["--task", "pre_sr", "--demos", str(tmp_path / "d.npz"), "--query", str(tmp_path / "q.npz"),
            "--model", str(saved), "--out", str(tmp_path / "o.npz"), "--nominal", "snr_db=12.5"]
    assert cli.main(argv) == 0
    ref = nominal_fsm.predict("pre_sr", demos, {"h": query["h"]}, nominal={"snr_db": 12.5})
    with np.load(tmp_path / "o.npz") as o:
        np.testing.assert_allclose(o["estimated_snr_db"], ref["estimated_snr_db"], rtol=1e-6)
        np.testing.assert_allclose(o["W"], ref["W"], rtol=1e-5, atol=1e-6)
