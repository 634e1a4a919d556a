"""Optimiser steps of the fine-tuning runs: the DeepSpeed engine (``run_finetune``, any number of ranks) or a plain
torch AdamW (in-process helpers such as the comparison's few-shot fine-tunes).

The engine is built by ``icwm.train.engine`` (``init_distributed``, ``build_engine``, ``optimizer_step``: the same
process group set-up, shm-buffer release, JSON config, client AdamW + warm-up/cosine ``LambdaLR`` and clipping as
pretraining) from the ``EngineSpec`` of each stage: one engine per training stage (the llm4wm schedule trains
other parameter groups in stage 2). The global batch ``train.batch_size`` is split evenly over the ranks; gradients
are averaged inside the engine.
"""
from __future__ import annotations

import torch
from torch import nn

from adapters_llm.config import TrainConfig
from icwm.config import check
from icwm.train.config import DeepSpeedSection, OptimConfig
from icwm.train.engine import EngineSpec

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8      # torch AdamW defaults (the baselines' papers use them)


def world() -> tuple[int, int]:
    """(rank, world size) of the running process group; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def micro_batch(global_batch: int, n_ranks: int) -> int:
    """Samples per rank of a global batch; ``ValueError`` naming ``train.batch_size`` unless it divides evenly."""
    check(global_batch % n_ranks == 0, "train.batch_size", f"a multiple of the number of ranks ({n_ranks})",
          global_batch)
    return global_batch // n_ranks


def engine_spec(cfg: TrainConfig, ds: DeepSpeedSection, n_steps: int, n_ranks: int) -> EngineSpec:
    """The ``icwm.train.engine.EngineSpec`` of one fine-tuning stage (global batch split over ``n_ranks``)."""
    optim = OptimConfig(lr=cfg.lr, betas=list(ADAM_BETAS), eps=ADAM_EPS, weight_decay=cfg.weight_decay,
                        warmup_steps=cfg.warmup_steps, min_lr_ratio=cfg.min_lr_ratio, clip=cfg.grad_clip)
    return EngineSpec(micro_batch=micro_batch(cfg.batch_size, n_ranks), grad_accum=1, steps=n_steps, optim=optim,
                      deepspeed=ds)


class TorchStep:
    """Plain AdamW + warm-up/cosine schedule + global-norm clipping over ``params`` (one process)."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter], cfg: TrainConfig, n_steps: int) -> None:
        from adapters_llm.train import lr_factor
        self.forward, self.params, self.clip = model, params, cfg.grad_clip
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                                     weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda i: lr_factor(i, cfg.warmup_steps, n_steps, cfg.min_lr_ratio))

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        """Clip, update, advance the schedule, clear the gradients; returns the gradient norm before clipping."""
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return norm

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]


class EngineStep:
    """A DeepSpeed engine around ``model`` training the parameters that require gradients (one stage)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, ds: DeepSpeedSection, n_steps: int) -> None:
        from icwm.train.engine import build_engine, own_clip
        self.spec = engine_spec(cfg, ds, n_steps, world()[1])
        self.engine, self.precision = build_engine(model, self.spec)
        self.forward, self.clip_here = self.engine, own_clip(self.spec)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> float:
        """``engine.step()`` (clipping first at ZeRO 0); returns the global gradient norm (NaN when unknown)."""
        from icwm.train.engine import optimizer_step
        norm = optimizer_step(self.engine, self.spec.optim.clip, self.clip_here)
        return float("nan") if norm is None else norm

    def lr(self) -> float:
        return self.engine.get_lr()[0]


def mean_over_ranks(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Mean of a small float tensor over the ranks (the tensor itself on one process); ``device``: the backend's."""
    _, n = world()
    if n == 1:
        return values
    out = values.detach().double().to(device)
    torch.distributed.all_reduce(out)
    return (out / n).to(values.device, values.dtype)
