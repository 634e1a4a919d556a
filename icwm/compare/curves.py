"""Training curves of the learned baselines beside the comparison results: ``curves.csv`` (long form: one row per
method x evaluation x task, plus the ``score`` rows of ``adapters_llm.early_stop``) and ``plots/curves_<kind>.png``
(validation score solid, training score dashed, best step marked; one panel per LLM method / per task)."""
from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("method", "kind", "task", "step", "stage", "train_loss", "val_loss")
SCORE = "score"             # task column of the aggregate score rows (mean of loss / |val loss at step 0|)


def curve_rows(method: str, kind: str, curve: dict) -> list[dict]:
    """Long-form rows of one ``Curve.to_dict()``: per evaluation the score and each task's raw losses."""
    out = []
    for i, (step, stage) in enumerate(zip(curve["step"], curve["stage"])):
        out.append({"method": method, "kind": kind, "task": SCORE, "step": step, "stage": stage,
                    "train_loss": curve["train"][i], "val_loss": curve["val"][i]})
        out += [{"method": method, "kind": kind, "task": t, "step": step, "stage": stage,
                 "train_loss": curve["train_task"][t][i], "val_loss": v[i]} for t, v in curve["val_task"].items()]
    return out


def write_curves(curves: dict[str, tuple[str, dict]], folder: Path) -> None:
    """``curves.csv`` into ``folder`` and ``plots/curves_<kind>.png``; ``curves``: method -> (kind, curve dict)."""
    rows = [r for m, (kind, c) in curves.items() for r in curve_rows(m, kind, c)]
    with open(folder / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    for kind in dict.fromkeys(k for k, _ in curves.values()):
        plot_kind(kind, {m: c for m, (k, c) in curves.items() if k == kind}, folder / "plots" / f"curves_{kind}.png")


def _panels(kind: str, curves: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Panel title -> {line label -> curve}: one panel per method (llm), one per task (single-task nets)."""
    if kind != "single_task":
        return {m: {m: c} for m, c in curves.items()}
    out: dict[str, dict[str, dict]] = {}
    for m, c in curves.items():
        task = next(iter(c["val_task"]))
        out.setdefault(task, {})[m[len(task) + 1:] if m.startswith(task + "_") else m] = c
    return out


def plot_kind(kind: str, curves: dict[str, dict], path: Path) -> None:
    """Grid of panels (see ``_panels``): validation score (solid) and training score (dashed) vs step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = _panels(kind, curves)
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels.items()):
        for i, (label, c) in enumerate(lines.items()):
            color = f"C{i}"
            ax.plot(c["step"], c["val"], color=color, label=f"{label} ({c['stopped']})")
            ax.plot(c["step"], c["train"], color=color, linestyle="--", alpha=0.6)
            ax.axvline(c["best_step"], color=color, linestyle=":", alpha=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss / |val loss at step 0|")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{kind}: validation (solid) and training (dashed) loss; dotted: best step", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
