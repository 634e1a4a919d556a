"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019) over windows of training steps.

Per-task losses are averaged over a window of ``window`` steps (optionally across ranks). After window t closes,
the weights for window t+1 are

    w_i = K * exp(r_i / T) / sum_j exp(r_j / T),    r_i = L_i(t) / L_i(t-1),

i.e. a task whose loss falls more slowly gets more weight; the weights sum to K (the number of tasks). The first two
windows use uniform weights (w_i = 1). For a task whose window means are both negative (e.g. a minus-sum-rate
loss), the ratio is inverted, L_i(t-1) / L_i(t), so that "< 1" still means "improving"; mixed signs, zero or
missing values give r_i = 1.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from icwm.config import check


def descent_ratio(now: float, before: float) -> float:
    """Loss descent ratio r = now / before (inverted for two negative losses; 1 where undefined)."""
    if not (math.isfinite(now) and math.isfinite(before)) or now == 0.0 or before == 0.0:
        return 1.0
    if now > 0 and before > 0:
        return now / before
    if now < 0 and before < 0:
        return before / now
    return 1.0


def dwa_weights(ratios: Sequence[float], T: float) -> list[float]:
    """w_i = K exp(r_i / T) / sum_j exp(r_j / T) for descent ratios r [K]."""
    r = torch.tensor(list(ratios), dtype=torch.float64)
    return (len(r) * torch.softmax(r / T, dim=0)).tolist()


class DWA:
    """Window-averaged Dynamic Weight Average task weights.

    Args:
        tasks: task ids (the K tasks balanced).
        T: temperature (Liu et al. use 2).
        window: steps per window.
        all_reduce: optional callable applied to a float64 tensor [2, K] of (loss sums, counts) of the window,
            reducing it across ranks in place (``torch.distributed.all_reduce``) or returning the reduced tensor;
            SUM or AVG reductions both give the global window means.
    """

    def __init__(self, tasks: Sequence[str], T: float = 2.0, window: int = 100,
                 all_reduce: Optional[Callable[[torch.Tensor], object]] = None) -> None:
        check(len(tasks) >= 1 and len(set(tasks)) == len(tasks), "dwa.tasks", "distinct task ids", tasks)
        check(T > 0, "dwa.T", "a positive temperature", T)
        check(int(window) >= 1, "dwa.window", "an integer >= 1", window)
        self.tasks, self.T, self.window, self.all_reduce = tuple(tasks), float(T), int(window), all_reduce
        self.steps, self.n_windows = 0, 0
        self._sums = [0.0] * len(self.tasks)
        self._counts = [0.0] * len(self.tasks)
        self.means: list[list[float]] = []       # the last two window means [K] each (oldest first)
        self._w = [1.0] * len(self.tasks)

    @property
    def weights(self) -> dict[str, float]:
        """Current weight per task (for logging and for weighting the losses)."""
        return dict(zip(self.tasks, self._w))

    def weight(self, task: str) -> float:
        """Current weight of ``task``."""
        check(task in self.tasks, "task", f"one of {self.tasks}", task)
        return self._w[self.tasks.index(task)]

    def observe(self, task: str, loss: float | torch.Tensor) -> None:
        """Add one loss value of ``task`` to the current window."""
        check(task in self.tasks, "task", f"one of {self.tasks}", task)
        i = self.tasks.index(task)
        self._sums[i] += float(loss.detach()) if torch.is_tensor(loss) else float(loss)
        self._counts[i] += 1.0

    def step(self) -> bool:
        """Count one training step; closes the window (and updates the weights) every ``window`` steps."""
        self.steps += 1
        if self.steps % self.window:
            return False
        self.close_window()
        return True

    def close_window(self) -> None:
        """Reduce the window's sums and counts (across ranks), store the means and update the weights."""
        t = torch.tensor([self._sums, self._counts], dtype=torch.float64)  # [2, K]
        if self.all_reduce is not None:
            out = self.all_reduce(t)
            t = out if torch.is_tensor(out) else t
        prev = self.means[-1] if self.means else [math.nan] * len(self.tasks)
        mean = [s / c if c > 0 else p for s, c, p in zip(t[0].tolist(), t[1].tolist(), prev)]
        self.means = (self.means + [mean])[-2:]
        self.n_windows += 1
        self._sums, self._counts = [0.0] * len(self.tasks), [0.0] * len(self.tasks)
        if len(self.means) == 2:
            ratios = [descent_ratio(n, b) for n, b in zip(self.means[1], self.means[0])]
            self._w = dwa_weights(ratios, self.T)

    def state_dict(self) -> dict:
        """Plain-python state (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {"tasks": list(self.tasks), "T": self.T, "window": self.window, "steps": self.steps,
                "n_windows": self.n_windows, "sums": list(self._sums), "counts": list(self._counts),
                "means": [list(m) for m in self.means], "weights": list(self._w)}

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``; the task list must match."""
        check(tuple(state["tasks"]) == self.tasks, "dwa.tasks", f"the saved tasks {tuple(state['tasks'])}",
              self.tasks)
        self.T, self.window = float(state["T"]), int(state["window"])
        self.steps, self.n_windows = int(state["steps"]), int(state["n_windows"])
        self._sums, self._counts = list(state["sums"]), list(state["counts"])
        self.means = [list(m) for m in state["means"]]
        self._w = list(state["weights"])
