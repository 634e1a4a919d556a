"""The report's "Per task" section: one line per task with native, the best adapted LLM and the best single-task net
(each chosen on the seen family, the first of the report's families, with what its training cost), the best
classical method, eta on the latent unseen family (native, test-time fine-tuned LLM, classical in-context; from
``ttft.csv``) and the not-converged marks.

Built from ``results.csv``, ``convergence.csv`` and ``ttft.csv`` rows only, like the rest of the report.
"""
from __future__ import annotations

from typing import Optional

from icwm.compare import table as T
from icwm.eval.report import PRIMARY
from icwm.eval.runner import MODEL


def _pick_on_seen(task: str, rs: list[dict], seen: str) -> Optional[str]:
    """Name of the method whose best row on the family ``seen`` is best (``T.best`` over zero-shot and N-shot rows)."""
    r = T.best(task, [r for r in rs if r["family"] == seen], "n_shots")
    return r["method"] if r else None


def _values(task: str, rs: list[dict], method: Optional[str], fams: list[str]) -> str:
    """``seen / unseen`` cell: the method's best row per family (any k or N)."""
    if method is None:
        return "-"
    cells = []
    for f in fams:
        r = T.best(task, [r for r in rs if r["method"] == method and r["family"] == f], "n_shots")
        cells.append(T.fmt(r["value"]) if r else "-")
    return " / ".join(cells)


def _training(rs: list[dict], conv: dict, method: Optional[str], task: str) -> str:
    """Steps run (best step, why it stopped) and wall minutes of the method's training on the seen family."""
    if method is None:
        return "-"
    c = conv.get((method, task))
    steps = f"{c['steps_run']} steps (best {c['best_step']}, {c['stopped']})" if c and c["steps_run"] else "- steps"
    wall = next((r["train_wall_s"] for r in rs if r["method"] == method and r["train_wall_s"] is not None), None)
    if wall is None:
        return steps
    return steps + (f", {wall:.3g} s" if wall < 120 else f", {wall / 60:.3g} min")


def _eta_cell(ttft: list[dict], task: str) -> str:
    """eta at the largest k on the task's latent unseen family, pooled: native / fine-tuned LLM / in-context."""
    rs = [r for r in ttft if r["task"] == task and r["system"] == T.ALL and r["family"].startswith("latent_unseen")]
    if not rs:
        return "-"
    if not T.teaches(rs):
        return "teaches nothing"
    k = max(r["k"] for r in rs if r["k"] is not None)
    eta = {r["method"]: r["value"] for r in rs if r["k"] == k and r["metric"] == "eta"}
    ft = next((m for m in eta if m.endswith("+ttft")), None)
    return f"k={k}: " + " / ".join(T.fmt(eta.get(m)) for m in (MODEL, ft, "in_context"))


def per_task_lines(rows: list[dict], conv: list[dict], ttft: Optional[list[dict]], tasks: list[str],
                   fams: list[str], table_k: int, bad: frozenset = frozenset()) -> list[str]:
    """The "Per task" section (``fams``: evaluation families, the first the training ("seen") one; ``conv``:
    convergence.csv rows; ``bad``: (method, task) pairs not converged, which are not candidates)."""
    by_pair = {(c["method"], c["task"]): c for c in conv}
    out = ["## Per task", "", f"Main metric {' / '.join(fams)}: native at k = {table_k}; the best adapted LLM (not "
           "the no-LLM ablation) and the best single-task net, each chosen on the seen family (its best zero-shot or "
           "fine-tuned value per family), with the steps and wall time of its training on the seen family (an LLM "
           "adapter is trained once for all tasks: its wall time is that run's); the best classical method; eta on "
           "the latent unseen family at the largest k of the ICL-vs-fine-tuning section (native / adapted LLM "
           "fine-tuned on the same pairs / classical in-context); learned methods of the task marked not converged.",
           "", "| task | metric | native | best adapted LLM | its training | best single-task net | its training | "
           "best classical | eta latent unseen | not converged |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        metric = PRIMARY[t][0]
        sel = T.select(rows, task=t, metric=metric)
        ok = [r for r in sel if (r["method"], t) not in bad]
        native = " / ".join(T.fmt(next((r["value"] for r in sel if r["method"] == MODEL and r["family"] == f
                                        and r["k"] == table_k), None)) for f in fams)
        llm = _pick_on_seen(t, [r for r in ok if r["kind"] == "llm" and r["adapter"] != "no_llm"], fams[0])
        net = _pick_on_seen(t, [r for r in ok if r["kind"] == "single_task"], fams[0])
        cls = _pick_on_seen(t, [r for r in sel if r["kind"] == "classical"], fams[0])
        marks = ", ".join(sorted(m for m, task in bad if task == t)) or "none"
        out.append(f"| {t} | {metric} | {native} | {llm or '-'}: {_values(t, sel, llm, fams)} | "
                   f"{_training(sel, by_pair, llm, t)} | {net or '-'}: {_values(t, sel, net, fams)} | "
                   f"{_training(sel, by_pair, net, t)} | {cls or '-'}: {_values(t, sel, cls, fams)} | "
                   f"{_eta_cell(ttft or [], t)} | {marks} |")
    return out + [""]
