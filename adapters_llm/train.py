"""Training loops and schedules of the LLM-adaptation baselines.

- ``zheng_dai``: one task drawn at random per iteration; pre_sr / pre_mm first trained to the WMMSE (lambda, p)
  label (``train.supervised_steps``, the task module's ``supervised_loss``), then on the task loss (unsupervised
  minus sum rate / softmin SINR).
- ``llm4wm``: stage 1 trains the encoders, output adapters and heads with the LLM frozen; stage 2 trains the
  MoE-LoRA (or any backbone adapter) and the heads with the input/output adapters frozen. Every step sums all
  tasks' losses with DWA weights (``icwm.train.dwa``).
Both use AdamW with linear warm-up and cosine decay, gradient clipping, an explicit ``torch.Generator``, and
(when ``torch.distributed`` is initialised, e.g. under the ``deepspeed`` launcher) gradient all-reduce.
A task's training data is one pool or a list of pools (one per system: shapes may differ between systems, e.g.
K = 4, 6, 8 users); a minibatch comes from one pool drawn uniformly. Few-shot mode trains on the first
``train.few_shot`` labelled samples of each pool (task and system) only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from adapters_llm.config import TrainConfig
from adapters_llm.model import GROUPS, AdaptedLLM
from icwm.config import check
from icwm.train.dwa import DWA

Batch = dict[str, torch.Tensor]
LossFn = Callable[[Batch, Batch], torch.Tensor]          # (pred, sample) -> [batch]
Pool = dict[str, torch.Tensor]                           # key -> [N, ...]
Pools = Pool | list[Pool]                                # one pool, or one per system (shapes may differ)


def flatten_groups(sample: Batch) -> Pool:
    """``[group, sample, ...]`` task tensors -> a pool ``[N, ...]`` (non-tensor entries dropped)."""
    return {k: v.reshape((-1,) + tuple(v.shape[2:])) for k, v in sample.items() if torch.is_tensor(v)}


def pool_size(pool: Pool) -> int:
    """Number of samples N of a pool."""
    return int(next(iter(pool.values())).shape[0])


def head(pool: Pool, n: int) -> Pool:
    """The first ``n`` samples of a pool (few-shot subset)."""
    check(0 < n <= pool_size(pool), "train.few_shot", f"in [1, {pool_size(pool)}] (the pool size)", n)
    return {k: v[:n] for k, v in pool.items()}


def as_list(pools: Pools) -> list[Pool]:
    """One pool or a list of pools -> a non-empty list of pools."""
    out = [pools] if isinstance(pools, dict) else list(pools)
    check(len(out) >= 1, "pools", "at least one pool per task", len(out))
    return out


def draw(pool: Pool, batch: int, rng: torch.Generator) -> Batch:
    """A minibatch of ``batch`` samples drawn with replacement from ``pool`` (explicit RNG)."""
    idx = torch.randint(0, pool_size(pool), (batch,), generator=rng)
    return {k: v[idx] for k, v in pool.items()}


def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 down to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def stages(cfg: TrainConfig) -> list[tuple[int, tuple[str, ...]]]:
    """(steps, trained groups) per stage of ``cfg.schedule`` (the one place the schedule is resolved)."""
    if cfg.schedule == "zheng_dai":
        return [(cfg.steps, GROUPS)]
    out = [(cfg.stage1_steps, ("encoders", "decoder_adapters", "heads")),
           (cfg.steps - cfg.stage1_steps, ("adapters", "heads"))]
    return [s for s in out if s[0] > 0]


@dataclass
class History:
    """Per-step training record: total loss, and per-task losses (task -> [(step, loss)])."""

    loss: list[float] = field(default_factory=list)
    task_loss: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def add(self, step: int, total: float, per_task: dict[str, float]) -> None:
        self.loss.append(total)
        for t, v in per_task.items():
            self.task_loss.setdefault(t, []).append((step, v))


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def _sync_grads(params: list[nn.Parameter]) -> None:
    """Average gradients over ranks when a process group is running (missing grads count as zero)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad /= world


class Trainer:
    """Runs the schedule of ``cfg`` on ``model``.

    Args:
        model: the assembled model. cfg: training config.
        pools: task -> training pool ``[N, ...]`` or a list of them (one per system).
        losses: task -> loss ``(pred, sample) -> [batch]``.
        supervised: task -> warm-up loss used for the first ``cfg.supervised_steps`` steps (zheng_dai).
        logger: optional object with ``scalars(step, dict)``. on_save: optional ``callable(step, final)`` (checkpoints).
    """

    def __init__(self, model: AdaptedLLM, cfg: TrainConfig, pools: dict[str, Pools], losses: dict[str, LossFn],
                 supervised: Optional[dict[str, LossFn]] = None, logger=None,
                 on_save: Optional[Callable[[int, bool], None]] = None) -> None:
        self.model, self.cfg, self.losses, self.supervised = model, cfg, losses, supervised or {}
        self.tasks = list(pools)
        check(all(t in losses for t in self.tasks), "losses", f"a loss for every task {self.tasks}", list(losses))
        self.pools = {t: [head(p, cfg.few_shot) if cfg.few_shot else p for p in as_list(ps)]
                      for t, ps in pools.items()}
        self.logger, self.on_save = logger, on_save
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.rng = torch.Generator().manual_seed(cfg.seed + 1_000_003 * rank)
        self.dwa = DWA(self.tasks, cfg.dwa_T, cfg.dwa_window) if cfg.schedule == "llm4wm" else None
        self.step, self.history = 0, History()

    def _loss(self, task: str) -> torch.Tensor:
        device = next(self.model.parameters()).device
        pools = self.pools[task]
        pool = pools[int(torch.randint(0, len(pools), (1,), generator=self.rng))] if len(pools) > 1 else pools[0]
        batch = _to(draw(pool, self.cfg.batch_size, self.rng), device)
        fn = self.losses[task]
        if self.step < self.cfg.supervised_steps and task in self.supervised:
            fn = self.supervised[task]
        return fn(self.model(batch, task), batch).float().mean()

    def _objective(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one step: one random task (zheng_dai) or the DWA-weighted sum over tasks (llm4wm)."""
        if self.dwa is None:
            task = self.tasks[int(torch.randint(0, len(self.tasks), (1,), generator=self.rng))]
            loss = self._loss(task)
            return loss, {task: float(loss.detach())}
        per = {t: self._loss(t) for t in self.tasks}
        for t, v in per.items():
            self.dwa.observe(t, v)
        total = sum(self.dwa.weight(t) * v for t, v in per.items())
        self.dwa.step()
        return total, {t: float(v.detach()) for t, v in per.items()}

    def fit(self) -> History:
        """Run all stages; returns the loss history."""
        from tqdm.auto import tqdm
        bar = tqdm(total=self.cfg.steps, disable=not self.cfg.progress, desc="finetune")
        self.model.train()
        for n_steps, groups in stages(self.cfg):
            self.model.set_trainable(groups)
            params = [p for p in self.model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
            start = self.step
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda i: lr_factor(i, self.cfg.warmup_steps, n_steps, self.cfg.min_lr_ratio))
            while self.step < start + n_steps:
                self._one_step(opt, sched, params)
                bar.update(1)
                bar.set_postfix(loss=f"{self.history.loss[-1]:.4g}")
        bar.close()
        if self.on_save is not None:
            self.on_save(self.step, True)
        return self.history

    def _one_step(self, opt: torch.optim.Optimizer, sched, params: list[nn.Parameter]) -> None:
        opt.zero_grad(set_to_none=True)
        loss, per_task = self._objective()
        check(bool(torch.isfinite(loss.detach())), "loss", "a finite training loss", float(loss.detach()))
        loss.backward()
        _sync_grads(params)
        gnorm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()
        sched.step()
        self.history.add(self.step, float(loss.detach()), per_task)
        self.step += 1
        if self.logger is not None and self.step % self.cfg.log_every == 0:
            scalars = {"loss/weighted": float(loss.detach()), "lr": sched.get_last_lr()[0], "grad_norm": float(gnorm)}
            scalars.update({f"loss/{t}": v for t, v in per_task.items()})
            if self.dwa is not None:
                scalars.update({f"dwa/{t}": w for t, w in self.dwa.weights.items()})
            self.logger.scalars(self.step, scalars)
        if self.on_save is not None and self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0:
            self.on_save(self.step, False)


@torch.no_grad()
def evaluate(model: AdaptedLLM, pools: dict[str, Pools], metric_fns: dict[str, Callable], batch: int = 64
             ) -> dict[str, dict[str, float]]:
    """Mean of every metric per task over all its samples (all its pools): task -> metric -> value.

    Args:
        model: the model (put in eval mode for the pass, then back to train mode).
        pools: task -> pool or list of pools. metric_fns: task -> ``(pred, sample) -> {name: [batch]}`` (or a
            single loss-like ``[batch]`` tensor, reported under ``"loss"``). batch: evaluation batch size.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, dict[str, float]] = {}
    for task, ps in pools.items():
        sums: dict[str, float] = {}
        n = 0
        for pool in as_list(ps):
            n += pool_size(pool)
            for i in range(0, pool_size(pool), batch):
                b = _to({k: v[i:i + batch] for k, v in pool.items()}, device)
                res = metric_fns[task](model(b, task), b)
                for name, v in (res.items() if isinstance(res, dict) else [("loss", res)]):
                    sums[name] = sums.get(name, 0.0) + float(v.float().sum())
        out[task] = {k: v / n for k, v in sums.items()}
    model.train(was_training)
    return out
