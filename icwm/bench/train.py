"""Training throughput: the DeepSpeed engine vs a plain torch loop on the same model, data and optimiser.

Both loops run the same steps (forward, task loss, backward, global-norm clipping, AdamW, LambdaLR) on the same
pre-generated episode batches (data generation is excluded), interleaved A/B/B/A in one process so machine noise
hits both; the figure is the median over repeats. Target: DeepSpeed overhead <= 10 %.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from icwm.config import load_config
from icwm.data.episodes import EpisodeDataset
from icwm.model import build_model
from icwm.train.config import PretrainConfig
from icwm.train.engine import build_engine, build_optimizer, init_distributed, optimizer_step, own_clip
from icwm.train.logging import TokenCounter
from icwm.train.loop import to_device
from icwm.train.objective import pair_losses, task_losses

TARGET_OVERHEAD = 0.10


def _batches(cfg: PretrainConfig, n: int) -> list[dict]:
    ds = EpisodeDataset(cfg.data, 0, 1)
    return [ds.batch_at(0, i) for i in range(n)]


def _ds_steps(engine, clip: float, clip_here: bool, batches: list[dict]) -> None:
    for b in batches:
        engine.backward(task_losses(engine, b))
        optimizer_step(engine, clip, clip_here)


def _plain_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, sched, clip: float, batches: list[dict],
                 autocast: torch.autocast) -> None:
    for b in batches:
        with autocast:
            pred = model(b)
        pair_losses(pred, b).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()


def _timed(fn, batches: list[dict]) -> float:
    t0 = time.perf_counter()
    fn(batches)
    return time.perf_counter() - t0


def measure(cfg: PretrainConfig, n_steps: int, repeats: int) -> dict[str, float]:
    """Median samples/s and tokens/s of both loops (single process, grad_accum forced to 1).

    Args:
        cfg: pretraining config (model size, data, optimiser); ``train.grad_accum`` is set to 1.
        n_steps: optimiser steps per timed block.  repeats: A/B blocks per loop.
    Returns:
        ``{"ds_samples_s", "plain_samples_s", "ds_tokens_s", "plain_tokens_s", "overhead", "device"}``.
    """
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, grad_accum=1))
    init_distributed()
    batches = _batches(cfg, n_steps)
    n_ep = sum(next(v.shape[0] for v in b.values() if torch.is_tensor(v)) for b in batches)
    torch.manual_seed(cfg.train.seed)
    m_ds = build_model(cfg.model)
    m_plain = build_model(cfg.model)
    m_plain.load_state_dict(m_ds.state_dict())
    tok_ds, tok_plain = TokenCounter(m_ds), TokenCounter(m_plain)
    engine, precision = build_engine(m_ds, cfg)
    dev = engine.device
    m_plain.to(dev)
    batches = [to_device(b, dev) for b in batches]
    opt, sched = build_optimizer(m_plain, cfg)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    run_ds = lambda bs: _ds_steps(engine, cfg.optim.clip, own_clip(cfg), bs)                # noqa: E731
    run_plain = lambda bs: _plain_steps(m_plain, opt, sched, cfg.optim.clip, bs, autocast)  # noqa: E731
    run_ds(batches[:2]), run_plain(batches[:2])                                        # warm-up
    tok_ds.take(), tok_plain.take()
    t_ds, t_plain = [], []
    for i in range(repeats):                                                             # A B B A A B ...
        first, second = ((run_ds, t_ds), (run_plain, t_plain))[:: 1 if i % 2 == 0 else -1]
        first[1].append(_timed(first[0], batches))
        second[1].append(_timed(second[0], batches))
    n_tok = tok_ds.take() / repeats
    assert n_tok == tok_plain.take() / repeats, "both loops must see the same tokens"
    d, p = statistics.median(t_ds), statistics.median(t_plain)
    return {"ds_samples_s": n_ep / d, "plain_samples_s": n_ep / p, "ds_tokens_s": n_tok / d,
            "plain_tokens_s": n_tok / p, "overhead": 1.0 - p / d, "device": f"{dev.type} {precision}"}


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (``name, value, unit, target, met``) for ``launch/bench.py``.

    Args:
        quick: debug model, few steps (smoke test); otherwise the small model on the debug system.
    """
    flavour = "debug" if quick else "small"
    overrides = ["train.progress=false"]
    if not quick:
        from icwm.model import FLAVOURS
        overrides += [f"model.{k}={v}" for k, v in FLAVOURS["small"].items()] + ["model.name=small",
                                                                                    "data.batch_size=16"]
    cfg = load_config(PretrainConfig, _debug_yaml(), overrides)
    r = measure(cfg, n_steps=4 if quick else 16, repeats=2 if quick else 5)
    tag = f"{flavour} model, micro batch {cfg.data.batch_size}, k {cfg.data.k_min}-{cfg.data.k_max}, {r['device']}"
    met = r["overhead"] <= TARGET_OVERHEAD
    return [
        {"name": f"train samples/s deepspeed ({tag})", "value": r["ds_samples_s"], "unit": "episodes/s"},
        {"name": f"train samples/s plain torch ({tag})", "value": r["plain_samples_s"], "unit": "episodes/s"},
        {"name": "train tokens/s deepspeed", "value": r["ds_tokens_s"], "unit": "tokens/s"},
        {"name": "train tokens/s plain torch", "value": r["plain_tokens_s"], "unit": "tokens/s"},
        {"name": "deepspeed overhead vs plain torch", "value": 100.0 * r["overhead"], "unit": "%",
         "target": f"<= {100 * TARGET_OVERHEAD:.0f}", "met": met},
    ]


def _debug_yaml() -> str:
    from pathlib import Path
    return str(Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "debug.yaml")
