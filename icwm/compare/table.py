"""Reading ``results.csv`` back and selecting from it (shared by the report and the plots, which use the CSV only).

Values are family-pooled rows (``system == "all"``) unless a system is named. ``PRIMARY`` (task -> main metric and
direction) comes from the evaluation report so both reports rank methods alike.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Optional

from icwm.eval.report import PRIMARY

ALL = "all"
INT_COLS = ("k", "n_shots", "n_eval", "params_trainable", "params_total")
FLOAT_COLS = ("sweep_value", "value", "train_wall_s", "latency_ms")
# LLM4WM Avg.: task -> (metric, transform); bf enters as 1 - top-1 accuracy, de as the relative distance error
LLM4WM = {"ce": "nmse", "cp": "nmse", "pf": "nmse", "bf": "top1", "de": "rel_err", "pe": "nmse"}


def read(path: str | Path) -> list[dict]:
    """Rows of a results.csv with typed cells (None for empty ones)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for c in INT_COLS:
                r[c] = int(r[c]) if r[c] != "" else None
            for c in FLOAT_COLS:
                r[c] = float(r[c]) if r[c] != "" else None
            out.append(r)
    return out


def select(rows: Iterable[dict], **eq) -> list[dict]:
    """Rows whose columns equal every ``eq`` value (``system`` defaults to the pooled ``all``)."""
    eq.setdefault("system", ALL)
    return [r for r in rows if all(r[c] == v for c, v in eq.items())]


def better(task: str, a: float, b: float) -> bool:
    """Whether ``a`` beats ``b`` on the task's main metric."""
    return PRIMARY[task][1] * (a - b) > 0


def best(task: str, rows: list[dict], by: str) -> Optional[dict]:
    """The row with the best finite value (ties: the smallest ``by``: k or N); None when there is none."""
    out = None
    for r in sorted((r for r in rows if math.isfinite(r["value"])), key=lambda r: r[by] or 0):
        if out is None or better(task, r["value"], out["value"]):
            out = r
    return out


def teaches(rows: list[dict]) -> bool:
    """Whether any row is a finite ``eta`` (``icwm.eval.eta`` gives NaN where the oracle - blind gap is within two
    standard errors: the family teaches nothing)."""
    return any(r["metric"] == "eta" and math.isfinite(r["value"]) for r in rows)


def methods(rows: list[dict], kind: str) -> list[str]:
    """Method names of ``kind`` in CSV order (deduplicated)."""
    return list(dict.fromkeys(r["method"] for r in rows if r["kind"] == kind))


def llm4wm_term(task: str, value: float) -> float:
    """One task's term of the LLM4WM average: NMSE linear, 1 - top-1 for bf, relative error for de."""
    return 1.0 - value if task == "bf" else value


def llm4wm_avg(values: dict[str, Optional[float]]) -> Optional[float]:
    """LLM4WM Avg. = mean of NMSE(ce), NMSE(cp), NMSE(pf), 1 - top1(bf), rel. MAE(de), NMSE(pe).

    Args:
        values: task -> the raw value of its ``LLM4WM`` metric (top1 for bf, not yet 1 - top1).
    Returns:
        The mean, or None unless all six tasks have a finite value.
    """
    terms = [values.get(t) for t in LLM4WM]
    if any(v is None or not math.isfinite(v) for v in terms):
        return None
    return sum(llm4wm_term(t, v) for t, v in zip(LLM4WM, terms)) / len(LLM4WM)


def families(rows: list[dict]) -> list[str]:
    """Evaluation families (not sweeps, not the ``-`` of memory rows) in CSV order."""
    return list(dict.fromkeys(r["family"] for r in rows if r["family"] != "-" and not r["family"].startswith("sweep_")))


def fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4g}"
