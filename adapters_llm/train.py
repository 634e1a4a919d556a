"""Training loops and schedules of the LLM-adaptation baselines.

- ``zheng_dai``: one task drawn at random per iteration; pre_sr / pre_mm first trained to the WMMSE (lambda, p)
  label (``train.supervised_steps``, the task module's ``supervised_loss``), then on the task loss (unsupervised
  minus sum rate / softmin SINR).
- ``llm4wm``: stage 1 trains the encoders, output adapters and heads with the LLM frozen; stage 2 trains the
  MoE-LoRA (or any backbone adapter) and the heads with the input/output adapters frozen. Every step sums all
  tasks' losses with DWA weights (``icwm.train.dwa``).
Both use AdamW with linear warm-up and cosine decay, gradient clipping and an explicit ``torch.Generator``; the step
is a DeepSpeed engine's (``run_finetune``, one or more ranks: ``adapters_llm.distributed``) or a plain torch one.
With validation pools, each stage stops early once the validation score stops improving (``early_stop``) and the
best evaluation's weights are restored.
A task's training data is one pool or a list of pools (one per system: shapes may differ between systems, e.g.
K = 4, 6, 8 users); a minibatch comes from one pool drawn uniformly. Few-shot mode trains on the first
``train.few_shot`` labelled samples of each pool (task and system) only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from adapters_llm.config import TrainConfig
from adapters_llm.distributed import EngineStep, TorchStep, mean_over_ranks, micro_batch, world
from adapters_llm.early_stop import STOP_CAP, STOP_PATIENCE, Curve, EarlyStopping, curve_point
from adapters_llm.model import GROUPS, AdaptedLLM
from icwm.config import check
from icwm.train.config import DeepSpeedSection
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


class Trainer:
    """Runs the schedule of ``cfg`` on ``model``, with validation and early stopping when ``val`` is given.

    Every rank draws the same global batch (``cfg.batch_size``, one generator seeded by ``cfg.seed``) and trains on
    its slice, so N ranks step like one process on the whole batch. Logged losses are means over the ranks.

    Args:
        model: the assembled model. cfg: training config.
        pools: task -> training pool ``[N, ...]`` or a list of them (one per system).
        losses: task -> loss ``(pred, sample) -> [batch]``.
        supervised: task -> warm-up loss used for the first ``cfg.supervised_steps`` steps (zheng_dai).
        logger: optional object with ``scalars(step, dict)``. on_save: optional ``callable(step, final)`` (checkpoints).
        val: task -> validation pools (held-out samples of the training systems); needs ``cfg.eval_every > 0``.
        deepspeed: train through a DeepSpeed engine with these settings (``run_finetune``); None: plain torch
            AdamW on one process.
    """

    def __init__(self, model: AdaptedLLM, cfg: TrainConfig, pools: dict[str, Pools], losses: dict[str, LossFn],
                 supervised: Optional[dict[str, LossFn]] = None, logger=None,
                 on_save: Optional[Callable[[int, bool], None]] = None, val: Optional[dict[str, Pools]] = None,
                 deepspeed: Optional[DeepSpeedSection] = None) -> None:
        self.model, self.cfg, self.losses, self.supervised = model, cfg, losses, supervised or {}
        self.tasks = list(pools)
        check(all(t in losses for t in self.tasks), "losses", f"a loss for every task {self.tasks}", list(losses))
        check(not val or cfg.eval_every > 0, "train.eval_every", "an integer > 0 with validation pools",
              cfg.eval_every)
        self.pools = {t: [head(p, cfg.few_shot) if cfg.few_shot else p for p in as_list(ps)]
                      for t, ps in pools.items()}
        self.logger, self.on_save, self.ds = logger, on_save, deepspeed
        self.rank, self.world = world()
        check(deepspeed is not None or self.world == 1, "deepspeed", "an engine for a multi-rank run", None)
        self.micro = micro_batch(cfg.batch_size, self.world)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.dwa = DWA(self.tasks, cfg.dwa_T, cfg.dwa_window) if cfg.schedule == "llm4wm" else None
        self.step, self.history = 0, History()
        self.val = {t: as_list(ps) for t, ps in (val or {}).items()}
        self.curve = Curve() if self.val else None
        self.stop = EarlyStopping(cfg.patience, cfg.min_delta, cfg.supervised_steps)
        self.best: Optional[dict[str, torch.Tensor]] = None

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _loss(self, task: str) -> torch.Tensor:
        pools = self.pools[task]
        pool = pools[int(torch.randint(0, len(pools), (1,), generator=self.rng))] if len(pools) > 1 else pools[0]
        full = draw(pool, self.cfg.batch_size, self.rng)                      # the global batch, alike on every rank
        batch = _to({k: v[self.rank * self.micro:(self.rank + 1) * self.micro] for k, v in full.items()},
                    self._device())
        fn = self.losses[task]
        if self.step < self.cfg.supervised_steps and task in self.supervised:
            fn = self.supervised[task]
        return fn(self.stepper.forward(batch, task), batch).float().mean()

    def _objective(self) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one step: one random task (zheng_dai) or the DWA-weighted sum over tasks (llm4wm); the per-task
        values returned (and fed to DWA) are means over the ranks, so every rank weights alike."""
        if self.dwa is None:
            task = self.tasks[int(torch.randint(0, len(self.tasks), (1,), generator=self.rng))]
            loss = self._loss(task)
            return loss, {task: float(mean_over_ranks(loss.detach()[None], self._device())[0])}
        per = {t: self._loss(t) for t in self.tasks}
        means = mean_over_ranks(torch.stack([v.detach() for v in per.values()]), self._device())
        for t, v in zip(per, means):
            self.dwa.observe(t, float(v))
        total = sum(self.dwa.weight(t) * v for t, v in per.items())
        self.dwa.step()
        return total, {t: float(v) for t, v in zip(per, means)}

    def fit(self) -> History:
        """Run all stages (each to its cap or until early stopping; best weights restored); returns the history."""
        from tqdm.auto import tqdm
        bar = tqdm(total=self.cfg.steps, disable=not self.cfg.progress, desc="finetune")
        self.model.train()
        for stage, (n_steps, groups) in enumerate(stages(self.cfg)):
            self.model.set_trainable(groups)
            self._stage(stage, n_steps, bar)
        bar.close()
        if self.curve is not None:
            self.curve.steps_run = self.step
        if self.on_save is not None:
            self.on_save(self.step, True)
        return self.history

    def _stage(self, stage: int, n_steps: int, bar) -> None:
        """Train one stage: its own optimiser (engine), validation every ``eval_every`` steps and at its end."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.stepper = (EngineStep(self.model, self.cfg, self.ds, n_steps) if self.ds is not None
                        else TorchStep(self.model, params, self.cfg, n_steps))
        self.stop.new_stage()
        if self.curve is not None and self.step == 0:
            self._validate(stage)
        start, stopped = self.step, False
        while self.step < start + n_steps and not stopped:
            self._one_step()
            bar.update(1)
            bar.set_postfix(loss=f"{self.history.loss[-1]:.4g}")
            if self.curve is not None and (self.step % self.cfg.eval_every == 0 or self.step == start + n_steps):
                stopped = self._validate(stage)
        if self.curve is not None:
            self.curve.stopped = STOP_PATIENCE if stopped else STOP_CAP
            self.model.load_state_dict(self.best, strict=False)          # the best evaluation's weights

    def _validate(self, stage: int) -> bool:
        """Evaluate the task losses on the validation pools and a same-sized training subset; snapshot the weights
        at a new best; returns whether the stage should stop."""
        sizes = {t: [pool_size(p) for p in ps] for t, ps in self.val.items()}
        train = {t: [{k: v[:n] for k, v in p.items()} for p, n in zip(self.pools[t], sizes[t])] for t in self.val}
        tr = {t: v["loss"] for t, v in evaluate(self.model, train, self.losses).items()}
        va = {t: v["loss"] for t, v in evaluate(self.model, self.val, self.losses).items()}
        if curve_point(self.curve, self.stop, self.step, stage, tr, va) or self.best is None:
            self.best = {k: v.clone() for k, v in self.model.adapter_state_dict().items()}
        if self.logger is not None:
            self.logger.scalars(self.step, {"val/score": self.curve.val[-1], "val/train_score": self.curve.train[-1],
                                            **{f"val/{t}": v for t, v in va.items()}})
        return self.stop.should_stop(self.step)

    def _one_step(self) -> None:
        loss, per_task = self._objective()
        check(bool(torch.isfinite(loss.detach())), "loss", "a finite training loss", float(loss.detach()))
        self.stepper.backward(loss)
        gnorm = self.stepper.step()
        self.history.add(self.step, sum(per_task.values()) if self.dwa is None else
                         float(mean_over_ranks(loss.detach()[None], self._device())[0]), per_task)
        self.step += 1
        if self.logger is not None and self.step % self.cfg.log_every == 0:
            scalars = {"loss/weighted": self.history.loss[-1], "lr": self.stepper.lr(), "grad_norm": gnorm}
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
