"""``report.md`` of a comparison folder, built from ``results.csv`` (+ ``config.yaml`` and ``notes.json``) only.

Tables: a summary (per task and family: native beside the best adapted LLM, single-task net and classical method);
per task (``icwm.compare.pertask``: the same choice made on the seen family, with training cost, eta and marks);
per task (main metric, methods x families: native at k = table_k and at its best k, LLMs zero-shot and at
their best N; learned methods that do not beat the task's trivial baseline on the seen family are marked "not
converged", from ``convergence.csv``); convergence (every learned method vs its trivial baseline, with its training
steps and curve); LLM4WM-style (ce, cp, pf, bf, de, pe and Avg.); quantisation (lora vs nf4_loftq vs nf4_naive per
backbone); backbone (gpt2 vs llama vs frozen vs no_llm); cost; ICL vs test-time fine-tuning (from ``ttft.csv``,
when that section ran); then the notes of skipped methods.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from icwm.compare import table as T
from icwm.compare.pertask import per_task_lines
from icwm.eval.eta import ETA_PRIMARY
from icwm.eval.report import PRIMARY
from icwm.eval.runner import MODEL


def _cell(r: Optional[dict], n_max: int, tag: str = "") -> str:
    if r is None:
        return "-"
    star = "*" if r["n_eval"] < n_max else ""
    return f"{T.fmt(r['value'])}{star}" + (f" ({tag}={r[tag]})" if tag and r[tag] is not None else "")


NOT_CONVERGED = "not converged"


def task_lines(rows: list[dict], task: str, fams: list[str], table_k: int, bad: frozenset = frozenset()) -> list[str]:
    """Main-metric table of one task: one line per method variant, one column per family; ``bad``: (method, task)
    pairs marked "not converged"."""
    metric = PRIMARY[task][0]
    sel = T.select(rows, task=task, metric=metric)
    n_max = {f: max([r["n_eval"] for r in sel if r["family"] == f] or [0]) for f in fams}
    lines = [f"### {task} ({metric}, {'higher' if PRIMARY[task][1] > 0 else 'lower'} is better)", "",
             "| method | kind | " + " | ".join(fams) + " |", "|---|---|" + "---|" * len(fams)]

    def add(label: str, kind: str, pick, method: str = "") -> None:
        cells = [pick([r for r in sel if r["family"] == f], n_max[f]) for f in fams]
        mark = f" ({NOT_CONVERGED})" if (method, task) in bad else ""
        if any(c != "-" for c in cells):
            lines.append(f"| {label}{mark} | {kind} | " + " | ".join(cells) + " |")

    add(f"{MODEL} (k={table_k})", "native",
        lambda rs, n: _cell(next((r for r in rs if r["method"] == MODEL and r["k"] == table_k), None), n))
    add(f"{MODEL} (best k)", "native", lambda rs, n: _cell(T.best(task, [r for r in rs if r["method"] == MODEL], "k"),
                                                            n, "k"))
    for m in T.methods(sel, "llm"):
        add(f"{m} zero-shot", "llm", lambda rs, n: _cell(next((r for r in rs if r["method"] == m and r["n_shots"] == 0),
                                                              None), n), m)
        add(f"{m} (best N)", "llm", lambda rs, n: _cell(T.best(task, [r for r in rs if r["method"] == m
                                                                      and (r["n_shots"] or 0) > 0], "n_shots"),
                                                         n, "n_shots"), m)
    for kind in ("single_task", "classical"):
        for m in T.methods(sel, kind):
            add(m, kind, lambda rs, n: _cell(T.best(task, [r for r in rs if r["method"] == m], "k"), n, "k"), m)
    return lines + [""]


def _best_label(task: str, rs: list[dict], by: str, n_max: int) -> str:
    """``_cell`` of the best row (``T.best``) followed by ``(method[, by=v])``, or "-"."""
    r = T.best(task, rs, by)
    if r is None:
        return "-"
    tag = f", {'N' if by == 'n_shots' else by}={r[by]}" if r[by] else (", zero-shot" if by == "n_shots" else "")
    return f"{_cell(r, n_max)} ({r['method']}{tag})"


def summary_lines(rows: list[dict], tasks: list[str], fams: list[str], table_k: int,
                  bad: frozenset = frozenset()) -> list[str]:
    """One line per (task, family): native at k = ``table_k`` beside the best adapted LLM (zero-shot or fine-tuned on
    N samples; not the ``no_llm`` ablation), the best single-task net and the best classical method (any k), each
    named; learned methods in ``bad`` ((method, task) pairs not converged) are left out of the choice."""
    out = ["## Summary", "", f"Main metric per task and family: native at k = {table_k} beside the best of each other "
           "kind (name, and k demonstrations or N fine-tuning samples; adapted LLMs without the no-LLM ablation); "
           "learned methods marked not converged are not candidates.", "",
           f"| task | metric | family | {MODEL} (k={table_k}) | best adapted LLM | best single-task net | "
           "best classical |", "|---|---|---|---|---|---|---|"]
    for t in tasks:
        metric = PRIMARY[t][0]
        sel = [r for r in T.select(rows, task=t, metric=metric) if (r["method"], t) not in bad]
        for f in fams:
            rs = [r for r in sel if r["family"] == f]
            if not rs:
                continue
            n_max = max(r["n_eval"] for r in rs)
            native = next((r for r in rs if r["method"] == MODEL and r["k"] == table_k), None)
            llm = [r for r in rs if r["kind"] == "llm" and r["adapter"] != "no_llm"]
            cells = [_cell(native, n_max), _best_label(t, llm, "n_shots", n_max)]
            cells += [_best_label(t, [r for r in rs if r["kind"] == kind], "k", n_max)
                      for kind in ("single_task", "classical")]
            direction = "higher" if PRIMARY[t][1] > 0 else "lower"
            out.append(f"| {t} | {metric} ({direction} better) | {f} | " + " | ".join(cells) + " |")
    return out + [""]


def _llm4wm_row(rows: list[dict], fam: str, label: str, pick) -> Optional[str]:
    vals = {}
    for t, metric in T.LLM4WM.items():
        r = pick(T.select(rows, task=t, family=fam, metric=metric), t)
        vals[t] = r["value"] if r else None
    if all(v is None for v in vals.values()):
        return None
    cells = [T.fmt(None if v is None else T.llm4wm_term(t, v)) for t, v in vals.items()]
    return f"| {label} | " + " | ".join(cells) + f" | {T.fmt(T.llm4wm_avg(vals))} |"


def _by_method(name: str, **eq):
    def pick(rs: list[dict], task: str) -> Optional[dict]:
        rs = [r for r in rs if r["method"] == name and all(r[c] == v for c, v in eq.items())]
        return rs[0] if rs else None
    return pick


def llm4wm_lines(rows: list[dict], fams: list[str], table_k: int) -> list[str]:
    """LLM4WM-style table per family (lower is better in every column)."""
    out = ["## LLM4WM-style table", "", "NMSE linear for ce / cp / pf / pe, 1 - top-1 accuracy for bf, relative "
           "distance error |d_hat - d| / d for de; Avg. = their mean (only when all six are present). LLMs at "
           "zero-shot; single-task nets and classical methods as trained / without demonstrations (classical k-NN "
           f"at k={table_k}).", ""]
    for fam in fams:
        out += [f"### {fam}", "", "| method | NMSE(ce) | NMSE(cp) | NMSE(pf) | 1-top1(bf) | relMAE(de) | NMSE(pe) | "
                "Avg. |", "|---|---|---|---|---|---|---|---|"]
        lines = [_llm4wm_row(rows, fam, f"{MODEL} (k={table_k})", _by_method(MODEL, k=table_k))]
        lines += [_llm4wm_row(rows, fam, m, _by_method(m, n_shots=0)) for m in T.methods(rows, "llm")]
        nets = sorted({r["method"][len(r["task"]) + 1:] for r in rows if r["kind"] == "single_task"
                       and r["task"] in T.LLM4WM})
        lines += [_llm4wm_row(rows, fam, f"single-task {n}", lambda rs, t, n=n: next(
            (r for r in rs if r["method"] == f"{t}_{n}"), None)) for n in nets]
        lines.append(_llm4wm_row(rows, fam, "best classical", lambda rs, t: _best_classical(rs, t, table_k)))
        out += [ln for ln in lines if ln] + [""]
    return out


def _best_classical(rs: list[dict], task: str, k: int) -> Optional[dict]:
    cand = [r for r in rs if r["kind"] == "classical" and r["k"] in (None, k)]
    sign = 1 if task == "bf" else -1
    return max(cand, key=lambda r: sign * r["value"], default=None)


def llm_grid(rows: list[dict], names: list[str], fams: list[str], title: str) -> list[str]:
    """Zero-shot main metric per task of the given LLM methods (cells ``fam1 / fam2``) plus weights MB."""
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows) if t in PRIMARY]
    names = [n for n in names if any(r["method"] == n for r in rows)]
    if not names:
        return []
    out = [f"## {title}", "", f"Zero-shot main metric per task ({' / '.join(fams)}); weights as stored.", "",
           "| method | quant | weights MB | " + " | ".join(tasks) + " |", "|---|---|---|" + "---|" * len(tasks)]
    for n in names:
        mem = next((r for r in rows if r["method"] == n and r["metric"] == "weights_mb"), None)
        cells = [" / ".join(T.fmt(next((r["value"] for r in T.select(rows, method=n, task=t, family=f,
                                                                     metric=PRIMARY[t][0]) if r["n_shots"] == 0),
                                       None)) for f in fams) for t in tasks]
        quant = next(r["quant"] for r in rows if r["method"] == n)
        out.append(f"| {n} | {quant} | {T.fmt(mem['value'] if mem else None)} | " + " | ".join(cells) + " |")
    return out + [""]


def cost_lines(rows: list[dict], batch: int, table_k: int) -> list[str]:
    """Parameters, weights, training wall time and inference latency per method."""
    out = ["## Cost", "", f"Latency: wall time of one inference call on a batch of {batch} episodes (mean over "
           f"batches and systems; native at k={table_k}; classical: one call of the task's baselines(), all its "
           "methods together). Train wall s: training on the seen family (LLMs: zero-shot model; few-shot adds the "
           "per-system fine-tuning in the CSV rows with n_shots > 0).", "",
           "| method | kind | backbone | adapter | quant | params trainable | params total | weights MB | "
           "train wall s | latency ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m and r["metric"] != "weights_mb" and r["system"] == T.ALL]
        rs = [r for r in rs if r["k"] in (None, table_k) and (r["n_shots"] or 0) == 0] or rs
        if not rs:
            continue
        lat = [r["latency_ms"] for r in rs if r["latency_ms"] is not None]
        mem = next((r["value"] for r in rows if r["method"] == m and r["metric"] == "weights_mb"), None)
        r0 = rs[0]
        out.append(f"| {m} | {r0['kind']} | {r0['backbone']} | {r0['adapter']} | {r0['quant']} | "
                   f"{r0['params_trainable']} | {r0['params_total']} | {T.fmt(mem)} | {T.fmt(r0['train_wall_s'])} | "
                   f"{T.fmt(sum(lat) / len(lat) if lat else None)} |")
    return out + [""]


def convergence_lines(conv: list[dict], z: float) -> list[str]:
    """Every learned method vs its task's trivial baseline on the seen family (``icwm.compare.converge``)."""
    if not conv:
        return []
    bad = [r for r in conv if r["converged"] != "True"]
    out = ["## Convergence", "", f"Each learned method (LLMs as trained on the seen family, i.e. zero-shot; "
           f"single-task nets) against its task's trivial baseline (MRT for precoding, x = 0 for det, LS + linear "
           f"interpolation, repeat-last, UL reuse, chance for bf, the nominal value for de / pe) on the seen family's "
           f"queries: converged = better on the task's eta metric (the main metric; the beam gain ratio for bf) by "
           f"more than z = {z:g} paired standard errors. Training ran until the validation loss stopped improving "
           "(`stopped` = patience) or to its step cap (`cap`); curves: `curves.csv`, `plots/curves_*.png`.", "",
           f"**{len(bad)} of {len(conv)} (method, task) pairs not converged**" +
           (": " + ", ".join(f"{r['method']}/{r['task']}" for r in bad) if bad else "."), "",
           "| method | task | metric | value | trivial | trivial value | z | verdict | steps | best step | stopped |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in conv:
        num = lambda v: T.fmt(float(v)) if v not in ("", None) else "-"     # noqa: E731
        verdict = "converged" if r["converged"] == "True" else f"**{NOT_CONVERGED}**"
        out.append(f"| {r['method']} | {r['task']} | {r['metric']} | {num(r['value'])} | {r['trivial']} | "
                   f"{num(r['trivial_value'])} | {num(r['z'])} | {verdict} | {r['steps_run'] or '-'} | "
                   f"{r['best_step'] or '-'} | {r['stopped'] or '-'} |")
    return out + [""]


def read_ttft(path: Path) -> list[dict]:
    """Rows of a ttft.csv (``icwm.eval.runner.COLUMNS``) with typed cells."""
    with open(path, newline="") as f:
        return [{**r, "k": int(r["k"]) if r["k"] else None, "value": float(r["value"]), "n": int(r["n"])}
                for r in csv.DictReader(f)]


def _ttft_order(method: str) -> tuple[int, str]:
    """Table order: native, the fine-tuned variant, in_context, the other baselines, blind, oracle."""
    rank = {MODEL: 0, "in_context": 2, "blind": 4, "oracle": 5}.get(method, 1 if method.endswith("+ttft") else 3)
    return rank, method


def _ttft_cells(rs: list[dict], method: str, k: int, metric: str, teaches: bool) -> list[str]:
    mine = {r["metric"]: r["value"] for r in rs if r["method"] == method and r["k"] == k}
    get = mine.get
    eta, se = (get("eta"), get("eta_se")) if teaches and method not in ("oracle", "blind") else (None, None)
    flops = get("flops")
    return [T.fmt(get(metric)), "-" if eta is None else f"{T.fmt(eta)} ± {T.fmt(se)}", T.fmt(get("steps")),
            T.fmt(get("seconds")), T.fmt(None if flops is None else flops / 1e9)]


def ttft_lines(rows: list[dict]) -> list[str]:
    """The "ICL vs test-time fine-tuning" section: per task and latent family (pooled systems), the eta metric, eta
    and the cost per episode of every method at each k (``ttft.csv`` rows)."""
    out = ["## ICL vs test-time fine-tuning", "",
           "Same episodes of the latent families, same k labelled pairs: native ICWM reads them as demonstrations (no "
           "weight update); `<variant>+ttft` is the adapted LLM fine-tuned on them, for every episode from its trained "
           "adapter, until their loss stops falling (then reset); oracle / blind / in_context are the classical latent "
           "baselines. eta = (m - m_blind) / (m_oracle - m_blind) +- its paired standard error (icwm.eval.eta); "
           "\"teaches nothing\": the oracle - blind gap is within two standard errors. Cost per episode: fine-tuning "
           "steps, wall seconds (fine-tune + query prediction; native: its forward) and GFLOPs (FlopCounterMode: "
           "steps x F_step + evaluations x 2 x F_fwd(k) + F_fwd(query), icwm/compare/ttft.py).", ""]
    pooled = [r for r in rows if r["system"] == T.ALL]
    for task, fam in dict.fromkeys((r["task"], r["family"]) for r in pooled):
        rs = [r for r in pooled if r["task"] == task and r["family"] == fam]
        metric = ETA_PRIMARY[task][0]
        gap = next((r["value"] for r in rs if r["method"] == "oracle" and r["metric"] == "gap"), None)
        teaches = T.teaches(rs)
        note = f"oracle - blind gap {T.fmt(gap)}" + ("" if teaches else ": the family teaches nothing here")
        out += [f"### {task} / {fam} ({metric}; {note})", "",
                "| method | k | " + metric + " | eta | steps | s / episode | GFLOPs / episode |",
                "|---|---|---|---|---|---|---|"]
        methods = sorted(dict.fromkeys(r["method"] for r in rs), key=_ttft_order)
        for m in methods:
            for k in sorted({r["k"] for r in rs if r["method"] == m and r["k"] is not None}):
                out.append(f"| {m} | {k} | " + " | ".join(_ttft_cells(rs, m, k, metric, teaches)) + " |")
        out.append("")
    return out


def markdown(rows: list[dict], cfg: dict, notes: list[str], conv: Optional[list[dict]] = None,
             ttft: Optional[list[dict]] = None) -> str:
    """The whole report text (``conv``: rows of ``convergence.csv``; ``ttft``: rows of ``ttft.csv``)."""
    conv = conv or []
    bad = frozenset((r["method"], r["task"]) for r in conv if r["converged"] != "True")
    fams, k = T.families(rows), int(cfg["native"]["table_k"])
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows) if t in PRIMARY]
    out = ["# ICWM head-to-head comparison", "",
           f"Native ICWM (k demonstrations, no weight update) vs adapted LLMs (trained on the first family, "
           f"zero-shot and fine-tuned on N labelled samples of the target system) vs single-task nets vs classical "
           f"baselines. Every method is scored on the same {cfg['episodes']} episodes per system (seed "
           f"{cfg['seed']}); family values pool the family's systems. `*`: fewer samples than the other methods "
           "(some systems do not fit that method's input shapes; see notes). Few-shot LLM samples are other drops of "
           "the target configuration, while ICWM's k demos come from the query's episode (for det / ce / cp the same "
           "drop or coherence block).", ""]
    out += summary_lines(rows, tasks, fams, k, bad) + per_task_lines(rows, conv, ttft, tasks, fams, k, bad)
    out += ["## Per-task tables", ""]
    for t in tasks:
        out += task_lines(rows, t, fams, k, bad)
    out += convergence_lines(conv, float(cfg.get("converge_z", 2.0)))
    out += llm4wm_lines(rows, fams, k)
    llms = T.methods(rows, "llm")
    for bb in dict.fromkeys(n.split("_", 1)[0] for n in llms if n != "no_llm"):
        out += llm_grid(rows, [f"{bb}_{a}" for a in ("lora", "nf4_loftq", "nf4_naive")], fams,
                        f"Quantisation ({bb})")
    out += llm_grid(rows, [n for n in llms if n.endswith(("_lora", "_frozen")) or n == "no_llm"], fams, "Backbones")
    out += cost_lines(rows, int(cfg["batch_size"]), k)
    out += ttft_lines(ttft) if ttft else []
    out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def write_report(folder: str | Path) -> Path:
    """Write ``report.md`` into a comparison folder from its results.csv, config.yaml and notes.json."""
    folder = Path(folder)
    rows = T.read(folder / "results.csv")
    cfg = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))
    notes = json.loads((folder / "notes.json").read_text()) if (folder / "notes.json").is_file() else []
    conv = []
    if (folder / "convergence.csv").is_file():
        with open(folder / "convergence.csv", newline="") as f:
            conv = list(csv.DictReader(f))
    ttft = read_ttft(folder / "ttft.csv") if (folder / "ttft.csv").is_file() else None
    path = folder / "report.md"
    path.write_text(markdown(rows, cfg, notes, conv, ttft))
    return path
