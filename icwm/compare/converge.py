"""Does every learned baseline beat its task's trivial baseline on the seen family? (the comparison checks itself)

Trivial baseline per task (``TaskSpec.trivial``): the weakest reference that uses the query alone, from the task
modules' baselines where they have one (MRT precoding, LS + linear interpolation, repeat-last, UL reuse =
``nearest``) and three predictors defined here: ``zero`` (det: x = 0, NMSE 1, SER of one fixed guess), ``chance`` (bf: a uniformly
random beam, in expectation: top-1 = 1 / beams, gain ratio = mean gain / best gain) and ``nominal`` (de, pe: one
constant, the seen systems' median distance / mean path loss from fresh samples: the loss-optimal input-blind guess).

A learned method (an adapted LLM zero-shot, i.e. as trained on the seen family; a single-task net) is "converged"
on a task when its check metric (``CHECK_METRIC``: the task's eta metric, ``TaskSpec.eta_metric``) beats the
trivial baseline's on the seen family's queries by more than
``converge_z`` paired standard errors (``icwm.eval.runner.paired_se``, over the queries of the seen systems that
both methods scored); else the report marks it "not converged".
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Optional

import torch

from icwm import tasks
from icwm.compare.methods import Acc, Key
from icwm.eval import runner
from icwm.eval.eta import ETA_PRIMARY
from icwm.wireless.sysconfig import SystemConfig

NOMINAL_KEY = {"de": "distance_m", "pe": "pathloss_db"}
NOMINAL_GROUPS, NOMINAL_SPG = 8, 32
# The metric each task is checked on: its eta metric. It is the primary metric except for bf, where it is the beam
# gain ratio: top-1 over 256 beams is a rare event on the seen family's queries (the angle map's own 3 of 32 is
# within 2 standard errors of chance), so it cannot tell a trained method from an untrained one.
CHECK_METRIC = ETA_PRIMARY
COLUMNS = ("method", "kind", "task", "family", "metric", "value", "trivial", "trivial_value", "z", "n_eval",
           "converged", "steps_run", "best_step", "stopped")


def nominal_value(task: ModuleType, systems: list[SystemConfig], seed: int) -> float:
    """The input-blind constant of ``task`` (de: median distance, pe: mean path loss) over fresh samples of the seen
    ``systems`` (their own seeds, never the evaluation episodes')."""
    from icwm.data.shards import stable_seed
    key = NOMINAL_KEY[task.ID]
    vals = [task.generate(s, NOMINAL_GROUPS, NOMINAL_SPG, torch.Generator().manual_seed(
        stable_seed(seed, "nominal", task.ID, s.name)))[key].reshape(-1).double() for s in systems]
    v = torch.cat(vals)
    return float(v.median() if task.ID == "de" else v.mean())


def trivial_pred(task: ModuleType, q: dict[str, torch.Tensor], nominal: Optional[float]) -> Optional[dict]:
    """Per-query metrics of the trivial predictor of ``task`` defined here (None when the task module has it)."""
    name = task.SPEC.trivial
    if name == "zero":
        return task.metric({"x": torch.zeros_like(q["x"])}, q)
    if name == "chance":
        gain = q["beam_gain"].reshape(q["beam_gain"].shape[0], -1).double()           # [batch, beams]
        n = gain.shape[-1]
        full = lambda v: torch.full((gain.shape[0],), v, dtype=torch.float64)    # noqa: E731
        return {"top1": full(1.0 / n), "top5": full(min(5, n) / n),
                "gain_ratio": gain.mean(-1) / gain.max(-1).values}
    if name == "nominal" and nominal is not None:
        key = NOMINAL_KEY[task.ID]
        return task.metric({key: torch.full_like(q[key], nominal, dtype=torch.float32)}, q)
    return None


def add_trivial(task: ModuleType, chunks: list[dict], nominal: Optional[float], acc: Acc) -> None:
    """Score the task's own trivial predictor (``zero`` / ``chance`` / ``nominal``) on the unit's queries."""
    for sample in chunks:
        q = runner.query(sample)
        vals = trivial_pred(task, q, nominal)
        if vals is not None:
            acc.add((task.SPEC.trivial, None, None), vals, 0.0)


def _values(acc: Acc, key: Key, metric: str) -> Optional[torch.Tensor]:
    v = acc.values.get(key, {}).get(metric)
    return torch.cat(v) if v else None


def trivial_key(acc: Acc, task: str) -> Optional[Key]:
    """The key of the trivial baseline in ``acc`` (its smallest k when it is scored at several)."""
    keys = [k for k in acc.values if k[0] == tasks.spec(task).trivial]
    return min(keys, key=lambda k: k[1] or 0) if keys else None


def check_family(task: str, units: list[Acc], learned: list[tuple[Key, str]], z_min: float) -> list[dict]:
    """Verdict rows of the ``learned`` (key, kind) methods on ``units`` (per-system Accs of the seen family)."""
    metric, sign = CHECK_METRIC[task]
    per_query = "nmse" if metric == "nmse_mean_db" else metric
    out = []
    for key, kind in learned:
        a, b = [], []
        for acc in units:
            ref = trivial_key(acc, task)
            va, vb = _values(acc, key, per_query), _values(acc, ref, per_query) if ref else None
            if va is not None and vb is not None and va.shape == vb.shape:
                a.append(va)
                b.append(vb)
        out.append(_verdict(task, key[0], kind, metric, sign, a, b, z_min))
    return out


def _verdict(task: str, method: str, kind: str, metric: str, sign: int, a: list, b: list, z_min: float) -> dict:
    row = {"method": method, "kind": kind, "task": task, "metric": metric, "trivial": tasks.spec(task).trivial,
           "value": None, "trivial_value": None, "z": None, "n_eval": 0, "converged": False}
    if not a:
        return row
    name = "nmse" if metric == "nmse_mean_db" else metric
    cur, ref = {name: torch.cat(a).double()}, {name: torch.cat(b).double()}
    va = dict((m, v) for m, v, _ in runner.summarise(cur))[metric]
    vb = dict((m, v) for m, v, _ in runner.summarise(ref))[metric]
    se = dict((m, s) for m, s, _ in runner.paired_se(cur, ref)).get(metric, float("nan"))
    gain = sign * (va - vb)
    z = gain / se if se > 0 else (math.inf if gain > 0 else (-math.inf if gain < 0 else 0.0))
    row.update(value=va, trivial_value=vb, z=z, n_eval=int(ref[name].numel()), converged=bool(z > z_min))
    return row
