"""Training telemetry: TensorBoard scalars (rank 0), per-task loss meters reduced across ranks, token counting.

Scalar names: ``loss/<task>``, ``loss/weighted``, ``dwa/<task>``, ``lr``, ``grad_norm``, ``throughput/samples_per_s``,
``throughput/tokens_per_s``, ``eval/<task>/<metric>/<method>`` (method ``model`` or a classical baseline).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import nn


class TBLogger:
    """TensorBoard writer on rank 0; a no-op on other ranks.

    Args:
        log_dir: event-file directory.
        enabled: write (rank 0) or not.
    """

    def __init__(self, log_dir: str | Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Add one scalar per entry at optimiser step ``step``."""
        if self.writer is None:
            return
        for name, v in values.items():
            self.writer.add_scalar(name, float(v), global_step=step)

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


class TokenCounter:
    """Counts transformer tokens per forward through a pre-hook on ``model.trunk`` (input ``[S, L, d]``).

    Args:
        model: the model (``ICWM``); without a ``trunk`` submodule nothing is counted (``available`` False).
    """

    def __init__(self, model: nn.Module) -> None:
        self.count = 0
        trunk = getattr(model, "trunk", None)
        self.available = isinstance(trunk, nn.Module)
        if self.available:
            trunk.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple) -> None:
        if torch.is_grad_enabled() and args and torch.is_tensor(args[0]):
            self.count += int(args[0].shape[0] * args[0].shape[1])

    def take(self) -> int:
        """Tokens counted since the last call (training forwards only)."""
        n, self.count = self.count, 0
        return n


class TaskMeter:
    """Sums of per-task losses, samples and tokens over a logging interval, reduced across ranks on read.

    Args:
        tasks: task ids.
        all_reduce: callable reducing a float64 tensor in place / returning it (SUM over ranks), or None.
    """

    def __init__(self, tasks: Sequence[str], all_reduce: Optional[Callable[[torch.Tensor], object]] = None):
        self.tasks, self.all_reduce = tuple(tasks), all_reduce
        self._t0 = time.perf_counter()
        self._reset()

    def _reset(self) -> None:
        self.sums = torch.zeros(3, len(self.tasks), dtype=torch.float64)   # loss sum, count, weighted loss sum
        self.samples, self.tokens = 0.0, 0.0

    def add(self, task: str, loss: float, weight: float, samples: int, tokens: int) -> None:
        """Record one micro batch of ``task``."""
        i = self.tasks.index(task)
        self.sums[0, i] += loss
        self.sums[1, i] += 1.0
        self.sums[2, i] += weight * loss
        self.samples += samples
        self.tokens += tokens

    def read(self) -> dict[str, float]:
        """Global interval scalars (collective): per-task mean loss, weighted mean loss, samples/s, tokens/s."""
        flat = torch.cat([self.sums.flatten(), torch.tensor([self.samples, self.tokens], dtype=torch.float64)])
        if self.all_reduce is not None:
            out = self.all_reduce(flat)
            flat = out if torch.is_tensor(out) else flat
        k = len(self.tasks)
        sums = flat[: 3 * k].reshape(3, k)
        dt = max(time.perf_counter() - self._t0, 1e-9)
        out = {f"loss/{t}": float(sums[0, i] / sums[1, i]) for i, t in enumerate(self.tasks) if sums[1, i] > 0}
        n = float(sums[1].sum())
        if n > 0:
            out["loss/weighted"] = float(sums[2].sum()) / n
        out["throughput/samples_per_s"] = float(flat[-2]) / dt
        if flat[-1] > 0:
            out["throughput/tokens_per_s"] = float(flat[-1]) / dt
        self._reset()
        self._t0 = time.perf_counter()
        return out


def format_scalars(values: Mapping[str, float], keys: Sequence[str] = ("loss/weighted", "lr", "grad_norm")) -> str:
    """Short ``key=value`` summary for the progress bar."""
    return " ".join(f"{k.split('/')[-1]}={values[k]:.3g}" for k in keys if k in values)
