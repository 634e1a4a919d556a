"""Evaluation plots (matplotlib, Agg backend, PNG): per task, the primary metric vs k, one panel per family.

The model is a curve over k; baselines without demonstrations are horizontal lines; baselines that use the
episode's demos (de / pe k-NN) are dashed curves.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icwm.eval.report import PRIMARY  # noqa: E402
from icwm.eval.runner import ALL, MODEL, EvalResult  # noqa: E402


def _series(res: EvalResult, task: str, family: str, metric: str) -> dict[str, dict]:
    """method -> {k: value} of the pooled rows (k None for methods without demos)."""
    out: dict[str, dict] = {}
    for r in res.rows:
        if r["task"] == task and r["family"] == family and r["system"] == ALL and r["metric"] == metric:
            out.setdefault(r["method"], {})[r["k"]] = r["value"]
    return out


def _panel(ax, res: EvalResult, task: str, family: str, metric: str) -> None:
    series = _series(res, task, family, metric)
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][1:] * 4)
    for method, vals in sorted(series.items(), key=lambda kv: (kv[0] != MODEL, kv[0])):
        if None in vals:
            ax.axhline(vals[None], ls=":", lw=1.2, color=next(colors), label=method)
            continue
        ks = sorted(vals)
        style = dict(color="C0", lw=2.0, marker="o") if method == MODEL else dict(color=next(colors), ls="--", marker=".")
        ax.plot(ks, [vals[k] for k in ks], label=method, **style)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(res.ks)
    ax.set_xticklabels([str(k) for k in res.ks])
    ax.set_title(family)
    ax.set_xlabel("demonstrations k")
    ax.grid(True, alpha=0.3)


def plot_task(res: EvalResult, task: str, path: Path) -> Path:
    """Write the PNG of ``task`` (primary metric vs k, one panel per family) to ``path``."""
    metric = PRIMARY[task][0]
    fams = [f for f in res.systems if any(r["task"] == task and r["family"] == f for r in res.rows)]
    fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 3.4), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        _panel(ax, res, task, fam, metric)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{task}: {metric} vs k ({res.model})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(res: EvalResult, out_dir: Path) -> list[Path]:
    """One ``<task>.png`` per evaluated task in ``out_dir``."""
    tasks = dict.fromkeys(r["task"] for r in res.rows)
    return [plot_task(res, t, out_dir / f"{t}.png") for t in tasks]
