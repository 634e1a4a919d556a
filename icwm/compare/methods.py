"""Per-method-kind scoring of one evaluation unit (task x family x system): every method sees the same episode
chunks (``icwm.eval.runner.episodes``) and is scored with the task's ``metric()`` on the same queries.

One function per kind adds per-query metrics and per-batch latencies to an ``Acc``: ``native`` (ICWM at each k,
via ``runner.model_query_pred``), ``classical`` (the task's baselines, ``runner.evaluate_chunk`` without a model),
``llm`` (adapted LLMs zero-shot and after few-shot fine-tuning on the target system), ``single_task`` (small nets).
``rows`` turns an ``Acc`` into result rows (schema ``COLUMNS``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Optional

import torch

from icwm.compare.llm import LLMMethod, few_shot, predict
from icwm.compare.single_task import SingleTaskNet, fits
from icwm.eval import runner
from icwm.wireless.sysconfig import SystemConfig

COLUMNS = ("method", "kind", "backbone", "adapter", "quant", "task", "family", "system", "sweep_value", "k",
           "n_shots", "metric", "value", "n_eval", "params_trainable", "params_total", "train_wall_s", "latency_ms")
TIMING = ("train_wall_s", "latency_ms")     # the only non-reproducible columns
Key = tuple[str, Optional[int], Optional[int]]   # (method, k, n_shots)
Chunk = dict[str, torch.Tensor]


@dataclass
class Acc:
    """Per-query metric values, per-batch latencies (ms) and extra training time (s) of one unit, by ``Key``."""

    values: dict[Key, dict[str, list[torch.Tensor]]] = field(default_factory=dict)
    latency: dict[Key, list[float]] = field(default_factory=dict)
    extra_train_s: dict[Key, float] = field(default_factory=dict)

    def add(self, key: Key, metrics: dict[str, torch.Tensor], ms: float) -> None:
        slot = self.values.setdefault(key, {})
        for name, v in metrics.items():
            slot.setdefault(name, []).append(v.detach().float().reshape(-1).cpu())
        self.latency.setdefault(key, []).append(ms)

    def merge(self, other: "Acc") -> None:
        """Pool ``other`` (another system of the same family) into this one."""
        for key, metrics in other.values.items():
            for name, chunks in metrics.items():
                self.values.setdefault(key, {}).setdefault(name, []).extend(chunks)
        for key, ms in other.latency.items():
            self.latency.setdefault(key, []).extend(ms)
        for key, s in other.extra_train_s.items():
            self.extra_train_s[key] = max(self.extra_train_s.get(key, 0.0), s)


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, 1e3 * (time.perf_counter() - t0)


def native(task: ModuleType, chunks: list[Chunk], model, ks: list[int], device: torch.device, acc: Acc) -> None:
    """ICWM predictions of every query from the first ``k`` demos of its episode, for each ``k``."""
    for sample in chunks:
        q = runner.query(sample)
        for k in ks:
            pred, ms = _timed(runner.model_query_pred, model, task, sample, k, device)
            acc.add((runner.MODEL, k, None), task.metric(pred, q), ms)


def classical(task: ModuleType, chunks: list[Chunk], ks: list[int], acc: Acc) -> Optional[str]:
    """Classical baselines (those of ``runner.CONTEXT_TASKS`` at each k >= 1). Latency: one call of the task's
    ``baselines()`` (all its methods together). Returns the error message of failed baselines, if any."""
    for sample in chunks:
        vals: runner.Values = {}
        err, ms = _timed(runner.evaluate_chunk, task, sample, ks, None, [], torch.device("cpu"), vals)
        if err:
            return err
        for (method, k), metrics in vals.items():
            acc.add((method, k, None), {n: torch.cat(v) for n, v in metrics.items()}, ms)
    return None


def _llm_pass(m: LLMMethod, task: ModuleType, chunks: list[Chunk], n: int, acc: Acc) -> bool:
    for sample in chunks:
        q = runner.query(sample)
        pred, ms = _timed(predict, m.model, task.ID, q)
        if pred is None:
            return False
        acc.add((m.name, None, n), task.metric(pred, q), ms)
    return True


def llm(m: LLMMethod, cfg, task: ModuleType, system: SystemConfig, chunks: list[Chunk], n_shots: list[int],
        acc: Acc) -> bool:
    """Zero-shot (``n_shots`` 0) and few-shot (each N in ``n_shots``) predictions of the queries by ``m``.

    Returns:
        False (nothing added) when the system's shapes do not fit the model's encoders.
    """
    if not _llm_pass(m, task, chunks, 0, acc):
        return False
    saved = {k: v.clone() for k, v in m.model.adapter_state_dict().items()}
    for n in n_shots:
        acc.extra_train_s[(m.name, None, n)] = few_shot(m, cfg, task.ID, system, n)
        _llm_pass(m, task, chunks, n, acc)
        m.model.load_state_dict(saved, strict=False)
    return True


@torch.no_grad()
def single_task(name: str, net: SingleTaskNet, task: ModuleType, chunks: list[Chunk], acc: Acc) -> bool:
    """Predictions of the queries by a single-task net; False (nothing added) when the shapes differ from training."""
    if not fits(net, runner.query(chunks[0])):
        return False
    for sample in chunks:
        q = runner.query(sample)
        pred, ms = _timed(net, {k: q[k] for k in task.X_KEYS})
        acc.add((name, None, None), task.metric(pred, q), ms)
    return True


def rows(acc: Acc, where: dict, info: dict[str, dict]) -> list[dict]:
    """Result rows of one unit.

    Args:
        acc: the collected values. where: ``task, family, system, sweep_value`` of the unit.
        info: method -> ``kind, backbone, adapter, quant, params_trainable, params_total, train_wall_s``.
    """
    out = []
    for (method, k, n), metrics in acc.values.items():
        meta = info[method]
        train = meta["train_wall_s"]
        if (method, k, n) in acc.extra_train_s:
            train = (train or 0.0) + acc.extra_train_s[(method, k, n)]
        lat = acc.latency[(method, k, n)]
        cat = {name: torch.cat(chunks) for name, chunks in metrics.items()}
        for metric, value, n_eval in runner.summarise(cat):
            out.append({**{c: meta.get(c) for c in COLUMNS}, **where, "k": k, "n_shots": n, "metric": metric,
                        "value": value, "n_eval": n_eval, "method": method, "train_wall_s": train,
                        "latency_ms": sum(lat) / len(lat)})
    return out
