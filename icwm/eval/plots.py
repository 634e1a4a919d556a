"""Evaluation plots (matplotlib, Agg backend, PNG): per task, the primary metric vs k, one panel per family.

The model is a curve over k; baselines without demonstrations are horizontal lines; baselines that use the
episode's demos (de / pe k-NN) are dashed curves. On latent-form families (scored against oracle and blind) the
oracle and blind are horizontal lines and a second row of panels shows the ICL efficiency eta(k) of every method
with its paired standard error (``icwm.eval.eta``).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icwm.eval.report import ETA_PRIMARY, PRIMARY, has_eta  # noqa: E402
from icwm.eval.runner import ALL, MODEL, EvalResult  # noqa: E402


FLAT = {"oracle": {"color": "k", "ls": "--"}, "blind": {"color": "0.5", "ls": ":"}}   # latent references


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
        if None in vals or method in FLAT:
            ref = FLAT.get(method, {})
            ax.axhline(vals.get(None, vals.get(min(vals))), ls=ref.get("ls", ":"), lw=1.4,
                       color=ref.get("color", next(colors)), label=method)
            continue
        ks = sorted(vals)
        style = dict(color="C0", lw=2.0, marker="o") if method == MODEL else dict(color=next(colors), ls="--", marker=".")
        ax.plot(ks, [vals[k] for k in ks], label=method, **style)
    _k_axis(ax, res)
    ax.set_title(family)


def _k_axis(ax, res: EvalResult) -> None:
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(res.ks)
    ax.set_xticklabels([str(k) for k in res.ks])
    ax.set_xlabel("demonstrations k")
    ax.grid(True, alpha=0.3)


def _eta_panel(ax, res: EvalResult, task: str, family: str) -> None:
    """eta(k) +- one paired standard error per method (no panel content when the family teaches nothing)."""
    eta, se = _series(res, task, family, "eta"), _series(res, task, family, "eta_se")
    for i, (method, vals) in enumerate(sorted(eta.items(), key=lambda kv: (kv[0] != MODEL, kv[0]))):
        ks = [k for k in sorted(vals) if vals[k] == vals[k]]
        if not ks:
            continue
        style = dict(color="C0", lw=2.0, marker="o") if method == MODEL else dict(color=f"C{i + 1}", ls="--", marker=".")
        ax.errorbar(ks, [vals[k] for k in ks], yerr=[se[method].get(k, 0.0) for k in ks], label=method, capsize=2,
                    **style)
    ax.axhline(1.0, color="k", ls="--", lw=1.0)
    ax.axhline(0.0, color="0.5", ls=":", lw=1.0)
    _k_axis(ax, res)
    ax.set_ylabel("ICL efficiency eta")


def plot_task(res: EvalResult, task: str, path: Path) -> Path:
    """Write the PNG of ``task`` (primary metric vs k, one panel per family; eta below on latent families)."""
    metric = PRIMARY[task][0]
    fams = [f for f in res.systems if any(r["task"] == task and r["family"] == f for r in res.rows)]
    with_eta = any(has_eta(res, task, f) for f in fams)
    fig, axes = plt.subplots(1 + with_eta, len(fams), figsize=(4.2 * len(fams), 3.4 * (1 + with_eta)), squeeze=False)
    for i, fam in enumerate(fams):
        _panel(axes[0][i], res, task, fam, ETA_PRIMARY[task][0] if has_eta(res, task, fam) else metric)
        axes[0][i].set_ylabel(ETA_PRIMARY[task][0] if has_eta(res, task, fam) else metric)
        if with_eta and has_eta(res, task, fam):
            _eta_panel(axes[1][i], res, task, fam)
        elif with_eta:
            axes[1][i].axis("off")
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
