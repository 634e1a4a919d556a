"""Task contracts (docs/contracts.md) and the physics/maths each task's labels must satisfy, at tiny sizes."""
import pytest
import torch

from icwm import tasks
from icwm.wireless.sysconfig import ArrayConfig, DualBandConfig, SystemConfig

G, S = 2, 3   # groups, samples per group


def tiny_cfg(**kw) -> SystemConfig:
    base = dict(name="tiny", scenario="umi", carrier_hz=2.4e9, array=ArrayConfig(kind="ula", cols=4, pattern="iso"),
                num_users=2, num_subcarriers=8, subcarrier_spacing_hz=180e3, snr_db=[10.0, 15.0],
                speed_kmh=[30.0, 30.0], distance_m=[40.0, 150.0],
                dual_band=DualBandConfig(sub6_ant=4, sub6_subcarriers=8, mmw_ant=8, mmw_subcarriers=8,
                                         codebook_size=16))
    base.update(kw)
    return SystemConfig(**base)


DTYPE = {"c": torch.complex64, "f": torch.float32, "i": torch.int64}   # TaskSpec kind -> dtype
SHAPES = {  # task -> key -> trailing shape (from the tiny config; keys and dtypes: the task's SPEC)
    "pre_sr": {"h": (2, 4), "snr_db": (), "lam_p": (2, 2)},
    "pre_mm": {"h": (2, 4), "snr_db": (), "lam_p": (2, 2)},
    "det": {"h": (4, 2), "y": (8, 4), "snr_db": (), "x": (8, 2)},
    "ce": {"h_ls": (1, 2, 4), "snr_db": (), "h": (1, 8, 4)},
    "cp": {"h_hist": (16, 8, 4), "snr_db": (), "h_fut": (4, 8, 4)},
    "pf": {"h_ul": (1, 8, 4), "snr_db": (), "h_dl": (1, 8, 4)},
    "bf": {"h_sub6": (8, 4), "beam": ()},
    "de": {"h_sub6": (8, 4), "distance_m": ()},
    "pe": {"h_sub6": (8, 4), "pathloss_db": ()},
}


@pytest.fixture(scope="module")
def samples():
    cfg = tiny_cfg()
    return {t: tasks.get(t).generate(cfg, G, S, torch.Generator().manual_seed(i)) for i, t in enumerate(tasks.TASKS)}


def label_as_pred(task_id: str, sample: dict) -> dict:
    mod = tasks.get(task_id)
    pred = {k: sample[k] for k in mod.Y_KEYS}
    if task_id == "bf":
        pred["beam_logits"] = torch.nn.functional.one_hot(sample["beam"], sample["beam_gain"].shape[-1]).float() * 50
    return pred


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_contract_shapes_and_dtypes(samples, task_id):
    spec = tasks.spec(task_id)
    s = samples[task_id]
    assert set(SHAPES[task_id]) == set(spec.x) | set(spec.y)
    for key, shape in SHAPES[task_id].items():
        assert tuple(s[key].shape) == (G, S) + shape, key
        assert torch.isfinite(torch.view_as_real(s[key]) if s[key].is_complex() else s[key].float()).all(), key
    for key, (_, kind) in {**spec.x, **spec.y}.items():
        assert s[key].dtype == DTYPE[kind], key


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_label_is_a_perfect_prediction(samples, task_id):
    """Loss/metric of the label itself: NMSE 0, accuracy 1, rate ratio 1, gap 0."""
    mod = tasks.get(task_id)
    s = samples[task_id]
    m = mod.metric(label_as_pred(task_id, s), s)
    l = mod.loss(label_as_pred(task_id, s), s)
    assert l.shape == (G * S,) and torch.isfinite(l).all()
    if task_id == "pre_sr":   # label from a converged WMMSE: at least WMMSE-20's rate (it may be above)
        assert (m["rate_ratio"] > 0.99).all(), m["rate_ratio"]
        return
    expect = {"pre_mm": ("gap_db", 0.0, 0.05), "det": ("ser", 0.0, 0),
              "ce": ("nmse", 0.0, 1e-10), "cp": ("nmse", 0.0, 1e-10), "pf": ("nmse", 0.0, 1e-10),
              "bf": ("top1", 1.0, 0), "de": ("mae_m", 0.0, 1e-6), "pe": ("mae_db", 0.0, 1e-6)}[task_id]
    name, value, tol = expect
    assert torch.allclose(m[name].float(), torch.full_like(m[name].float(), value), atol=tol), (name, m[name])


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_baselines_run_and_score_finitely(samples, task_id):
    mod = tasks.get(task_id)
    s = samples[task_id]
    for name, pred in mod.baselines(s).items():
        m = mod.metric(pred, s)
        for metric_name, v in m.items():
            assert v.shape[0] == G * S, (name, metric_name)
            query = v.reshape(G, S)[:, -1]              # the query position must always be scored
            assert torch.isfinite(query).all(), (name, metric_name)


def test_pre_sr_wmmse_beats_linear_precoders(samples):
    s = samples["pre_sr"]
    mod = tasks.get("pre_sr")
    rates = {n: mod.metric(p, s)["sum_rate"] for n, p in mod.baselines(s).items()}
    assert (rates["wmmse"] >= rates["rzf"] - 1e-4).all()
    assert rates["rzf"].mean() > rates["mrt"].mean()


def test_pre_mm_optimum_beats_zf(samples):
    s = samples["pre_mm"]
    mod = tasks.get("pre_mm")
    b = mod.baselines(s)
    opt, zf = mod.metric(b["optimal"], s)["min_sinr_db"], mod.metric(b["zf"], s)["min_sinr_db"]
    assert (opt >= zf - 1e-3).all()
    assert torch.allclose(opt, s["sinr_opt_db"].reshape(-1), atol=0.05)


def test_det_group_shares_channel_and_snr(samples):
    s = samples["det"]
    assert torch.equal(s["h"][:, :1].expand_as(s["h"]), s["h"])
    assert torch.equal(s["snr_db"][:, :1].expand_as(s["snr_db"]), s["snr_db"])
    assert not torch.equal(s["x"][:, 0], s["x"][:, 1])


def test_cp_windows_are_consecutive_snapshots_of_one_link(samples):
    """Noise-free future of window s is followed by window s+1: the channel must move smoothly between them."""
    s = samples["cp"]
    fut_end, next_start = s["h_fut"][:, :-1, -1], s["h_hist"][:, 1:, 0]
    gap = (fut_end - next_start).abs().pow(2).mean() / fut_end.abs().pow(2).mean()
    other = (s["h_fut"][0, 0, -1] - s["h_hist"][1, 1, 0]).abs().pow(2).mean() / fut_end.abs().pow(2).mean()
    assert gap < 0.5 * other


def test_pf_dl_differs_from_ul(samples):
    s = samples["pf"]
    assert (s["h_ul"] - s["h_dl"]).abs().mean() > 0.1


def test_generate_is_deterministic():
    cfg = tiny_cfg()
    a = tasks.get("pre_sr").generate(cfg, 1, 2, torch.Generator().manual_seed(5))
    b = tasks.get("pre_sr").generate(cfg, 1, 2, torch.Generator().manual_seed(5))
    assert torch.equal(a["h"], b["h"]) and torch.equal(a["lam_p"], b["lam_p"])


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="task"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="num_users"):
        tasks.get("pre_sr").generate(tiny_cfg(num_users=6), 1, 1, torch.Generator())
    with pytest.raises(ValueError, match="n_per_group"):
        tasks.get("cp").generate(tiny_cfg(), 1, 0, torch.Generator())


def test_pre_sr_reference_rate_is_wmmse20(samples):
    from icwm.wireless import precoding
    s = samples["pre_sr"]
    h, p = s["h"].reshape(-1, 2, 4), torch.pow(10.0, s["snr_db"].reshape(-1) / 10)
    ref = precoding.sum_rate(h, precoding.wmmse(h, p, iters=20, init="rzf"))
    assert torch.allclose(s["rate_wmmse"].reshape(-1), ref.float(), rtol=1e-4)


@pytest.mark.parametrize("task_id", tasks.TASKS)
def test_baselines_never_read_the_query_label(samples, task_id):
    """Changing the query's (last pair's) labels must not change any baseline's query prediction."""
    mod = tasks.get(task_id)
    s = samples[task_id]
    t = dict(s)
    for key in mod.Y_KEYS:
        y = s[key].clone()
        y[:, -1] = y[:, -1] * 3 + (1 if not y.is_complex() else 1 + 1j) if y.dtype != torch.int64 else (y[:, -1] + 1) % 16
        t[key] = y
    a, b = mod.baselines(s), mod.baselines(t)
    for method in a:
        for key in a[method]:
            pa, pb = a[method][key][:, -1], b[method][key][:, -1]
            assert torch.equal(torch.nan_to_num(pa), torch.nan_to_num(pb)), (method, key)


def test_bf_knn_takes_the_beam_of_the_most_similar_demo(samples):
    """A query whose sub-6 channel repeats demo j's gets demo j's beam; a lone pair falls back to the angle map."""
    s = {key: v.clone() for key, v in samples["bf"].items()}
    j = 1
    s["h_sub6"][:, -1] = s["h_sub6"][:, j]
    s["beam"][:, j] = torch.arange(s["beam"].shape[0]) + 7                 # distinct, recognisable beams
    out = tasks.get("bf").baselines(s)
    assert torch.equal(out["knn"]["beam"][:, -1], s["beam"][:, j])
    lone = tasks.get("bf").baselines({key: v[:, -1:] for key, v in s.items()})
    assert "knn" not in lone and "angle_map" in lone
