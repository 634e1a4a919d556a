"""Comparison plots (matplotlib Agg, PNG) from ``results.csv`` only.

- ``sweep_<name>_<task>.png``: main metric vs the swept value (transmit power / SNR, K, speed) for ICWM, the
  classical baselines, the best adapted LLM and the best single-task net.
- ``k_<task>.png``: main metric vs k demonstrations (ICWM, context baselines) and vs N labelled samples of the
  target configuration (LLMs; N = 0 is zero-shot) on one axis, one panel per family.
- ``native_vs_llm.png``: ICWM at its table k vs the best adapted LLM (best method and N) per task and family.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icwm.compare import table as T  # noqa: E402
from icwm.eval.report import PRIMARY  # noqa: E402
from icwm.eval.runner import MODEL  # noqa: E402

XLABEL = {"snr_db": "SNR (dB)", "num_users": "users K", "speed_kmh": "UE speed (km/h)"}


def _xlabel(task: str, system: str) -> str:
    fld = system.split("__")[-1].rsplit("_", 1)[0]
    if fld == "snr_db" and task in ("pre_sr", "pre_mm"):
        return "transmit power P (dB, unit noise variance)"
    return XLABEL.get(fld, fld)


def _curve(rows: list[dict]) -> tuple[list[float], list[float]]:
    rs = sorted(rows, key=lambda r: r["sweep_value"])
    return [r["sweep_value"] for r in rs], [r["value"] for r in rs]


def _best_of(task: str, rows: list[dict], kind: str) -> list[dict]:
    """Rows of the method of ``kind`` with the best mean over the sweep (zero-shot for LLMs)."""
    cands = {}
    for r in rows:
        if r["kind"] == kind and (r["n_shots"] or 0) == 0 and math.isfinite(r["value"]):
            cands.setdefault(r["method"], []).append(r)
    if not cands:
        return []
    sign = PRIMARY[task][1]
    return max(cands.values(), key=lambda rs: sign * sum(r["value"] for r in rs) / len(rs))


def plot_sweep(rows: list[dict], family: str, task: str, path: Path) -> Path:
    """Main metric vs swept value for one sweep family and task."""
    metric = PRIMARY[task][0]
    sel = [r for r in rows if r["family"] == family and r["task"] == task and r["metric"] == metric]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.plot(*_curve([r for r in sel if r["method"] == MODEL]), "o-", lw=2, color="C0",
            label=f"{MODEL} (k={next((r['k'] for r in sel if r['method'] == MODEL), '')})")
    for m in T.methods(sel, "classical"):
        ax.plot(*_curve([r for r in sel if r["method"] == m]), ".--", label=m)
    for kind, label in (("llm", "best LLM"), ("single_task", "best single-task")):
        best = _best_of(task, sel, kind)
        if best:
            ax.plot(*_curve(best), "s-.", label=f"{label}: {best[0]['method']}")
    if task == "det":
        ax.set_yscale("log")
    ax.set_xlabel(_xlabel(task, sel[0]["system"]) if sel else "")
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: {metric} ({family})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _k_panel(ax, sel: list[dict], fam: str) -> None:
    rs = [r for r in sel if r["family"] == fam]
    by = lambda m, c: sorted((r[c], r["value"]) for r in rs if r["method"] == m and r[c] is not None)  # noqa: E731
    ax.plot(*zip(*by(MODEL, "k")), "o-", lw=2, color="C0", label=f"{MODEL} (k demos)") if by(MODEL, "k") else None
    for m in T.methods(rs, "llm"):
        ax.plot(*zip(*by(m, "n_shots")), "s--", label=f"{m} (N)")
    for kind in ("classical", "single_task"):
        for m in T.methods(rs, kind):
            pts = by(m, "k")
            if pts:
                ax.plot(*zip(*pts), ".:", label=m)
            else:
                ax.axhline(next(r["value"] for r in rs if r["method"] == m), ls=":", lw=1, label=m,
                           color="grey" if kind == "classical" else "tan")
    ax.set_xscale("symlog", linthresh=1.0)
    ticks = sorted({r[c] for r in rs for c in ("k", "n_shots") if r[c] is not None})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("k demos (native) / labelled samples N of the target configuration (LLMs)", fontsize=7)
    ax.set_title(fam)
    ax.grid(True, alpha=0.3)


def plot_k(rows: list[dict], task: str, path: Path) -> Path:
    """Main metric vs k / N, one panel per family."""
    metric = PRIMARY[task][0]
    sel = T.select(rows, task=task, metric=metric)
    fams = [f for f in T.families(rows) if any(r["family"] == f for r in sel)]
    fig, axes = plt.subplots(1, len(fams), figsize=(5.0 * len(fams), 3.8), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        _k_panel(ax, sel, fam)
    axes[0][0].set_ylabel(metric)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{task}: {metric} vs demonstrations / labelled samples", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_native_vs_llm(rows: list[dict], table_k: int, path: Path) -> Path:
    """Bars per task: ICWM at ``table_k`` vs the best adapted LLM, on each family."""
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows) if t in PRIMARY]
    fams = T.families(rows)
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 3.2), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        sel = T.select(rows, task=t, metric=PRIMARY[t][0])
        for i, fam in enumerate(fams):
            nat = next((r["value"] for r in sel if r["method"] == MODEL and r["family"] == fam and r["k"] == table_k),
                       None)
            llm = T.best(t, [r for r in sel if r["kind"] == "llm" and r["family"] == fam], "n_shots")
            for j, (v, c) in enumerate(((nat, "C0"), (llm["value"] if llm else None, "C1"))):
                if v is not None and math.isfinite(v):
                    ax.bar(3 * i + j, v, color=c, label=("native" if j == 0 else "best LLM") if i == 0 else None)
        ax.set_xticks([3 * i + 0.5 for i in range(len(fams))], fams, fontsize=7)
        ax.set_title(f"{t} ({PRIMARY[t][0]})", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"native ICWM (k={table_k}) vs best adapted LLM (best method and N)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(csv_path: str | Path, out_dir: str | Path, table_k: int = 16) -> list[Path]:
    """Every plot of a results.csv into ``out_dir``."""
    rows, out = T.read(csv_path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fam, task in dict.fromkeys((r["family"], r["task"]) for r in rows if r["family"].startswith("sweep_")):
        paths.append(plot_sweep(rows, fam, task, out / f"{fam}_{task}.png"))
    for t in [t for t in dict.fromkeys(r["task"] for r in rows) if t in PRIMARY]:
        paths.append(plot_k(rows, t, out / f"k_{t}.png"))
    paths.append(plot_native_vs_llm(rows, table_k, out / "native_vs_llm.png"))
    return paths
