"""Inference benchmark: the ``small`` ICWM answering a batch of pre_sr episodes (k = 16) vs WMMSE-20 solving the
same query channels on the same hardware, plus single-episode latency.

``run(quick) -> list[dict]``; rows have ``name, value, unit, target, met`` and details (``weights``: "trained"
when the shipped model exists, else "random init", in which case the sum-rate ratio says nothing about quality).
The model's time includes turning its (lambda, p) output into the precoder W, which is what a transmitter needs.
"""
from __future__ import annotations

import statistics
import time

import torch

from icwm.infer import SHIPPED, FewShotModel, natural_outputs
from icwm.model import ModelConfig, build_model
from icwm.tasks import pre_sr
from icwm.wireless import precoding
from icwm.wireless.sysconfig import ArrayConfig, SystemConfig

FULL = {"batch": 1024, "groups": 128, "k": 16, "rows": 16, "cols": 8, "users": 4, "latency_runs": 50, "repeats": 3}
QUICK = {"batch": 32, "groups": 8, "k": 4, "rows": 2, "cols": 4, "users": 2, "latency_runs": 5, "repeats": 1}
SNR_DB = 10.0   # Zheng & Dai: P = 0 dBW, noise -10 dBW


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


def load_small(device: torch.device) -> tuple[torch.nn.Module, str]:
    """The shipped model when it exists (``trained``), else a randomly initialised ``small`` flavour."""
    if (SHIPPED / "config.yaml").is_file():
        return FewShotModel.from_pretrained(None, device=device).model, "trained"
    torch.manual_seed(0)   # build_model initialises through torch.nn defaults (global RNG)
    return build_model(ModelConfig.flavour("small")).to(device).eval(), "random init"


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


def run(quick: bool = False) -> list[dict]:
    """Model vs WMMSE-20 on one batch of query channels: time, speed-up, sum-rate ratio; single-episode latency."""
    size = QUICK if quick else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, weights = load_small(device)
    ep = episodes(size, torch.Generator().manual_seed(0))
    h = ep["h"][:, -1].to(device)                                       # [batch, user, ant] query channels
    p = torch.pow(10.0, ep["snr_db"][:, -1] / 10.0).to(device)         # [batch] power budgets
    model_fn = _model_fn(model, ep, size["k"], device)
    wmmse_fn = lambda: precoding.wmmse(h, p, iters=pre_sr.WMMSE_ITERS, init="rzf")  # noqa: E731
    t_model, t_wmmse = _timed(model_fn, device, size["repeats"]), _timed(wmmse_fn, device, size["repeats"])
    ratio = float(precoding.sum_rate(h, model_fn()).mean() / precoding.sum_rate(h, wmmse_fn()).mean())
    one = _model_fn(model, {key: v[:1] for key, v in ep.items()}, size["k"], device)
    lat = [_timed(one, device, 1) for _ in range(size["latency_runs"])]
    info = {"weights": weights, "device": str(device), "batch": size["batch"], "k": size["k"],
            "nt": size["rows"] * size["cols"], "users": size["users"], "snr_db": SNR_DB}
    return [
        {"name": "icwm_pre_sr_batch_time", "value": t_model * 1e3, "unit": "ms/batch", "target": "", "met": "", **info},
        {"name": "wmmse20_batch_time", "value": t_wmmse * 1e3, "unit": "ms/batch", "target": "", "met": "", **info},
        {"name": "icwm_vs_wmmse20_speedup", "value": t_wmmse / t_model, "unit": "x", "target": ">= 20",
         "met": t_wmmse / t_model >= 20, **info},
        {"name": "icwm_vs_wmmse20_sum_rate_ratio", "value": ratio, "unit": "fraction", "target": ">= 0.99",
         "met": ratio >= 0.99, **info},
        {"name": "icwm_single_episode_latency", "value": statistics.median(lat) * 1e3, "unit": "ms (median)",
         "target": "", "met": "", **info, "runs": size["latency_runs"]},
    ]
