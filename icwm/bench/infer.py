"""Inference benchmark: the ``small`` ICWM answering a batch of pre_sr episodes (k = 16) vs WMMSE-20 solving the
same query channels on the same hardware, plus single-episode latency; and the serving case, the same queries
answered against one shared set of k demonstrations, through the cached context (``icwm.model.cache``: the
demonstrations encoded once, included in the batch time) beside the uncached forward pass on the same episodes.

``run(quick, model) -> list[dict]``; rows have ``name, value, unit, target, met`` and details (``weights``: "trained"
when a model directory is given or the shipped model exists, else "random init", in which case the sum-rate ratio
says nothing about quality).
The model's time includes turning its (lambda, p) output into the precoder W, which is what a transmitter needs.
These rows time the network's own path (``model.precoding_refine`` off: the read-out); the ``icwm_refined_*`` rows
time the inference default, where the read-out starts WMMSE-100 (``pre_sr.refine``), and give its sum-rate ratio.
"""
from __future__ import annotations

import statistics
import time

import torch

from icwm.infer import SHIPPED, FewShotModel, natural_outputs
from icwm.model import ModelConfig, build_model
from icwm.model.cache import answer_queries, encode_demos
from icwm.tasks import pre_sr
from icwm.wireless import precoding
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig

FULL = {"batch": 1024, "groups": 128, "k": 16, "rows": 16, "cols": 8, "users": 4, "latency_runs": 50, "repeats": 3}
QUICK = {"batch": 32, "groups": 8, "k": 4, "rows": 2, "cols": 4, "users": 2, "latency_runs": 5, "repeats": 1}
SNR_DB = 10.0   # Zheng & Dai: P = 0 dBW, noise -10 dBW
SPEEDUP_TARGET = {"cpu": 0.25, "cuda": 20.0}   # x WMMSE-20's throughput on the same hardware (issue 17's targets)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time (s) of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def load_small(device: torch.device, path: str | None = None) -> tuple[torch.nn.Module, str]:
    """The model at ``path`` or, without one, the shipped model when it exists (``trained``), else a randomly
    initialised ``small`` flavour."""
    if path is not None or (SHIPPED / "config.yaml").is_file():
        return FewShotModel.from_pretrained(path, device=device).model, "trained"
    torch.manual_seed(0)   # build_model initialises through torch.nn defaults (global RNG)
    return build_model(ModelConfig.flavour("small")).to(device).eval(), "random init"


def read_out(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The same weights with ``precoding_refine`` off: the network's own (lambda, p) read-out."""
    m = build_model(net.cfg.replace(precoding_refine=False)).to(device).eval()
    m.load_state_dict(net.state_dict())
    return m


def episodes(size: dict, rng: torch.Generator) -> dict:
    """pre_sr episodes [batch, k + 1, ...] of the Zheng & Dai setup (UMa NLOS, 10 dB).

    ``groups`` groups of ``2 (k + 1)`` samples are generated (labels included) and episode e takes k + 1 of group
    e mod groups in a random order, so a batch of 1024 does not need 17k labelled Nt = 128 drops.
    """
    cfg = SystemConfig(name="bench_zd", scenario="uma", los=False, array=ArrayConfig("upa", size["rows"], size["cols"]),
                       num_users=size["users"], num_subcarriers=1, snr_db=[SNR_DB, SNR_DB])
    pool = pre_sr.generate(cfg, size["groups"], 2 * (size["k"] + 1), rng)
    grp = torch.arange(size["batch"]) % size["groups"]
    idx = torch.argsort(torch.rand(size["batch"], 2 * (size["k"] + 1), generator=rng), dim=1)[:, : size["k"] + 1]
    return {key: v[grp[:, None], idx] for key, v in pool.items()}


def _model_fn(model: torch.nn.Module, ep: dict, k: int, device: torch.device):
    batch = {"task": "pre_sr", "k": k, **{key: ep[key].to(device) for key in ("h", "snr_db", "lam_p")}}
    batch["lam_p"] = batch["lam_p"].clone()
    batch["lam_p"][:, -1] = 0
    q = {key: batch[key][:, -1] for key in ("h", "snr_db")}

    def fn() -> torch.Tensor:
        with torch.inference_mode():
            pred = model(batch)
            return natural_outputs("pre_sr", {"lam_p": pred["lam_p"][:, -1]}, q)["W"]
    return fn


def _shared(ep: dict, k: int) -> tuple[dict, dict]:
    """One set of demonstrations (episode 0's k pairs) [1, k, ...] and every episode's query [batch, 1, ...] (zero
    labels), as model batches. pre_sr drops are i.i.d. draws of one configuration, so any k drops can serve as the
    context of every query."""
    demos = {"task": "pre_sr", "k": k, **{key: ep[key][:1, :k] for key in ("h", "snr_db", "lam_p")}}
    queries = {"task": "pre_sr", "k": 0, **{key: ep[key][:, k:] for key in ("h", "snr_db")},
               "lam_p": torch.zeros_like(ep["lam_p"][:, k:])}
    return demos, queries


def _cached_fn(model: torch.nn.Module, demos: dict, queries: dict, device: torch.device, encode: bool = True):
    """The cached path: W [batch, ant, user] for the queries, the demonstrations encoded in the call (``encode``) or
    once beforehand (a cell's context already cached)."""
    demos = {key: v.to(device) if torch.is_tensor(v) else v for key, v in demos.items()}
    queries = {key: v.to(device) if torch.is_tensor(v) else v for key, v in queries.items()}
    q = {key: queries[key][:, 0] for key in ("h", "snr_db")}
    with torch.inference_mode():
        cached = None if encode else encode_demos(model, demos)

    def fn() -> torch.Tensor:
        with torch.inference_mode():
            pred = answer_queries(model, encode_demos(model, demos) if cached is None else cached, queries)
            return natural_outputs("pre_sr", {"lam_p": pred["lam_p"]}, q)["W"]
    return fn


def cached_rows(model: torch.nn.Module, ep: dict, size: dict, device: torch.device, wmmse: tuple,
                info: dict) -> list[dict]:
    """The batch's queries against one shared context: cached vs uncached forward vs WMMSE-20 (``wmmse``: its batch
    time in s and its precoders), sum-rate ratio, single-query latency with the context cached."""
    k = size["k"]
    demos, queries = _shared(ep, k)
    episodes_shared = {key: torch.cat((demos[key].expand((size["batch"],) + demos[key].shape[1:]), ep[key][:, k:]), 1)
                       for key in ("h", "snr_db", "lam_p")}
    cached_fn, uncached_fn = _cached_fn(model, demos, queries, device), _model_fn(model, episodes_shared, k, device)
    t_cached, t_uncached = _timed(cached_fn, device, size["repeats"]), _timed(uncached_fn, device, size["repeats"])
    h = ep["h"][:, -1].to(device)
    w_cached, (t_wmmse, w_wmmse) = cached_fn(), wmmse
    ratio = float(precoding.sum_rate(h, w_cached).mean() / precoding.sum_rate(h, w_wmmse).mean())
    diff = float((w_cached - uncached_fn()).abs().max())
    one = _cached_fn(model, demos, {key: v[:1] if torch.is_tensor(v) else v for key, v in queries.items()}, device,
                     encode=False)
    lat = [_timed(one, device, 1) for _ in range(size["latency_runs"])]
    info = {**info, "context": f"one set of k = {k} demonstrations shared by the batch", "w_max_abs_diff": diff}
    return [
        {"name": "icwm_cached_pre_sr_batch_time", "value": t_cached * 1e3, "unit": "ms/batch", "target": "", "met": "",
         **info, "includes": "encoding the context once"},
        {"name": "icwm_uncached_shared_batch_time", "value": t_uncached * 1e3, "unit": "ms/batch", "target": "",
         "met": "", **info},
        {"name": "icwm_cached_vs_uncached_speedup", "value": t_uncached / t_cached, "unit": "x", "target": "",
         "met": "", **info},
    ] + versus_wmmse_rows("icwm_cached", "icwm_cached_single_query_latency", t_cached, t_wmmse, ratio, lat, info)


def versus_wmmse_rows(prefix: str, latency_name: str, t: float, t_wmmse: float, ratio: float, lat: list[float],
                      info: dict) -> list[dict]:
    """Rows of a model path against WMMSE-20 on the same queries: ``<prefix>_vs_wmmse20_speedup`` (batch time
    ratio; target ``SPEEDUP_TARGET`` of ``info["device"]``'s type), ``<prefix>_vs_wmmse20_sum_rate_ratio`` and the
    median single-query latency ``latency_name``."""
    target = SPEEDUP_TARGET["cuda" if str(info["device"]).startswith("cuda") else "cpu"]
    return [
        {"name": f"{prefix}_vs_wmmse20_speedup", "value": t_wmmse / t, "unit": "x", "target": f">= {target:g}",
         "met": t_wmmse / t >= target, **info},
        {"name": f"{prefix}_vs_wmmse20_sum_rate_ratio", "value": ratio, "unit": "fraction", "target": ">= 0.99",
         "met": ratio >= 0.99, **info},
        {"name": latency_name, "value": statistics.median(lat) * 1e3, "unit": "ms (median)", "target": "", "met": "",
         **info, "runs": len(lat)},
    ]


def run(quick: bool = False, model: str | None = None) -> list[dict]:
    """Model vs WMMSE-20 on one batch of query channels: time, speed-up, sum-rate ratio; single-episode latency; the
    same queries against one cached context (``cached_rows``); the refined inference default (``refined_rows``).
    ``model``: a model directory (default: shipped)."""
    size = QUICK if quick else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    refined, weights = load_small(device, model)
    net = read_out(refined, device)
    ep = episodes(size, torch.Generator().manual_seed(0))
    h = ep["h"][:, -1].to(device)                                       # [batch, user, ant] query channels
    p = torch.pow(10.0, ep["snr_db"][:, -1] / 10.0).to(device)         # [batch] power budgets
    model_fn = _model_fn(net, ep, size["k"], device)
    wmmse_fn = lambda: precoding.wmmse(h, p, iters=pre_sr.WMMSE_ITERS, init="rzf")  # noqa: E731
    t_model, t_wmmse = _timed(model_fn, device, size["repeats"]), _timed(wmmse_fn, device, size["repeats"])
    w_wmmse = wmmse_fn()
    ratio = float(precoding.sum_rate(h, model_fn()).mean() / precoding.sum_rate(h, w_wmmse).mean())
    one = _model_fn(net, {key: v[:1] for key, v in ep.items()}, size["k"], device)
    lat = [_timed(one, device, 1) for _ in range(size["latency_runs"])]
    info = {"weights": weights, "device": str(device), "batch": size["batch"], "k": size["k"],
            "nt": size["rows"] * size["cols"], "users": size["users"], "snr_db": SNR_DB}
    return [
        {"name": "icwm_pre_sr_batch_time", "value": t_model * 1e3, "unit": "ms/batch", "target": "", "met": "", **info},
        {"name": "wmmse20_batch_time", "value": t_wmmse * 1e3, "unit": "ms/batch", "target": "", "met": "", **info},
    ] + (versus_wmmse_rows("icwm", "icwm_single_episode_latency", t_model, t_wmmse, ratio, lat, info)
         + cached_rows(net, ep, size, device, (t_wmmse, w_wmmse), info) + refined_rows(refined, ep, size, device,
                                                                                    (t_wmmse, w_wmmse), info))


def refined_rows(net: torch.nn.Module, ep: dict, size: dict, device: torch.device, wmmse: tuple,
                 info: dict) -> list[dict]:
    """The inference default (read-out refined by WMMSE-100) on the same batch: time, and sum rate against
    WMMSE-20's (``wmmse``: its batch time in s and its precoders)."""
    fn = _model_fn(net, ep, size["k"], device)
    t = _timed(fn, device, size["repeats"])
    h = ep["h"][:, -1].to(device)
    ratio = float(precoding.sum_rate(h, fn()).mean() / precoding.sum_rate(h, wmmse[1]).mean())
    info = {**info, "path": "read-out refined by WMMSE-100 (model.precoding_refine)"}
    return [{"name": "icwm_refined_pre_sr_batch_time", "value": t * 1e3, "unit": "ms/batch", "target": "", "met": "",
             **info},
            {"name": "icwm_refined_vs_wmmse20_sum_rate_ratio", "value": ratio, "unit": "fraction", "target": "",
             "met": "", **info}]
