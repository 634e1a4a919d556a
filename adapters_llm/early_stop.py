"""Validation curves and early stopping of the learned baselines (adapted LLMs, single-task nets).

A run is evaluated on held-out samples of its training systems at step 0, every ``eval_every`` steps and at the end
of each stage. The validation *score* is the mean over tasks of ``val_loss[task] / |val_loss[task] at step 0|`` (one
scale for tasks whose losses differ by orders of magnitude or sign: the pre_sr loss is minus a rate ratio); lower is
better. A stage stops once ``patience`` evaluations in a row failed to lower the best score by more than
``min_delta`` (never before ``min_step``, e.g. the end of a supervised warm-up), or at its step cap; the weights of
the best evaluation are then restored. ``Curve`` holds the record saved beside the results (train and validation
loss per task and the two scores per evaluation).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

STOP_PATIENCE, STOP_CAP = "patience", "cap"


def score(losses: dict[str, float], ref: dict[str, float]) -> float:
    """Mean over tasks of ``losses[t] / |ref[t]|`` (``ref``: the validation losses at step 0)."""
    return sum(v / max(abs(ref[t]), 1e-12) for t, v in losses.items()) / len(losses)


@dataclass
class Curve:
    """One point per evaluation: step, stage, train / validation scores and per-task losses; the outcome.

    ``train`` losses are measured like the validation ones (eval mode, task loss) on a fixed subset of the training
    pool of the validation pool's size, so the two curves are comparable.
    """

    step: list[int] = field(default_factory=list)
    stage: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    train_task: dict[str, list[float]] = field(default_factory=dict)
    val_task: dict[str, list[float]] = field(default_factory=dict)
    best_step: int = 0
    best_val: float = math.inf
    stopped: str = STOP_CAP         # "patience" (the last stage stopped early) | "cap" (it reached its step cap)
    steps_run: int = 0

    def add(self, step: int, stage: int, train: dict[str, float], val: dict[str, float]) -> float:
        """Record one evaluation; returns its validation score."""
        ref = {t: self.val_task[t][0] for t in val} if self.val_task else val
        self.step.append(step)
        self.stage.append(stage)
        self.train.append(score(train, ref))
        self.val.append(score(val, ref))
        for t in val:
            self.train_task.setdefault(t, []).append(train[t])
            self.val_task.setdefault(t, []).append(val[t])
        return self.val[-1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Curve":
        return cls(**d)


class EarlyStopping:
    """Best-score bookkeeping and the patience rule (see the module docstring).

    Args:
        patience: evaluations without improvement before stopping; 0 = never stop early.
        min_delta: improvement of the score that counts. min_step: no stop before this step.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, min_step: int = 0) -> None:
        self.patience, self.min_delta, self.min_step = patience, min_delta, min_step
        self.best, self.best_step, self.bad = math.inf, 0, 0

    def new_stage(self) -> None:
        """A new stage starts: its patience counter restarts (the best score carries over)."""
        self.bad = 0

    def update(self, step: int, value: float) -> bool:
        """Record the score of an evaluation at ``step``; returns whether it is a new best (snapshot then)."""
        if value < self.best - self.min_delta or not math.isfinite(self.best):
            self.best, self.best_step, self.bad = value, step, 0
            return True
        self.bad += 1
        return False

    def should_stop(self, step: int) -> bool:
        """Whether the current stage should stop now."""
        return self.patience > 0 and self.bad >= self.patience and step >= self.min_step


def curve_point(curve: Optional[Curve], stop: EarlyStopping, step: int, stage: int, train: dict[str, float],
                val: dict[str, float]) -> bool:
    """Add an evaluation to ``curve`` and ``stop``; returns whether it is a new best."""
    value = curve.add(step, stage, train, val)
    best = stop.update(step, value)
    curve.best_step, curve.best_val = stop.best_step, stop.best
    return best
