"""Comparison orchestration: train the baselines that need training, score every method on the same episodes of
every task x family x system (and sweep point), write the output folder.

Output folder (``out_dir``): ``config.yaml`` (resolved), ``provenance.json``, ``results.csv``, ``notes.json``,
``convergence.csv`` (each learned method vs its task's trivial baseline on the seen family, ``converge``),
``curves.csv`` (training / validation loss per evaluation of every learned method, ``curves``), ``ttft.csv`` (with
``ttft.enabled``: ICL vs test-time fine-tuning on the latent families, ``icwm.compare.ttft``), ``report.md``,
``plots/*.png`` (report and plots are built from the CSVs) and, unless a section names its own ``cache_dir``, the
caches reused on a rerun with an unchanged setup: ``llm_runs/`` (trained adapters, ``llm.cache``),
``single_task_runs/`` (trained single-task nets) and ``ttft_runs/`` (per-system test-time fine-tuning results;
``icwm.compare.cache``).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from adapters_llm.train import flatten_groups
from icwm import tasks as task_registry
from icwm.compare import converge as C
from icwm.compare import methods as M
from icwm.compare.config import CompareConfig
from icwm.compare.llm import LLMMethod, build_methods, missing_weights, train_base, weights_mb
from icwm.compare.provenance import provenance
from icwm.compare.single_task import train_cached
from icwm.compare.sweeps import sweep_units
from icwm.compare.ttft import run_ttft
from icwm.config import check, to_yaml
from icwm.data.shards import stable_seed
from icwm.eval import runner
from icwm.eval.config import EvalConfig
from icwm.wireless.sysconfig import SystemConfig

KIND_ORDER = {"native": 0, "llm": 1, "single_task": 2, "classical": 3}
NA = "-"


@dataclass
class Methods:
    """Everything scored: the native model, trained nets and LLMs, method metadata, notes of skipped methods."""

    model: Optional[torch.nn.Module] = None
    model_ks: list[int] = field(default_factory=list)
    nets: dict[str, dict[str, torch.nn.Module]] = field(default_factory=dict)   # task -> method -> net
    llms: list[LLMMethod] = field(default_factory=list)
    info: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    nominal: dict[str, float] = field(default_factory=dict)          # task -> constant of its ``nominal`` baseline
    curves: dict[str, tuple[str, dict]] = field(default_factory=dict)   # method -> (kind, Curve.to_dict())
    convergence: list[dict] = field(default_factory=list)             # converge.check_family rows


def _meta(kind: str, backbone=NA, adapter=NA, quant=NA, trainable=0, total=0, train_s=0.0, mb=0.0) -> dict:
    return {"kind": kind, "backbone": backbone, "adapter": adapter, "quant": quant, "params_trainable": trainable,
            "params_total": total, "train_wall_s": train_s, "weights_mb": mb}


def load_native(cfg: CompareConfig, ms: Methods, device: torch.device) -> None:
    """The native model (``native.model``), its k values (capped at its k_max) and metadata."""
    model, desc = runner.load_model(cfg.native.model, device)
    if model is None:
        ms.notes.append("native model skipped (native.model=none)")
        return
    ms.model, (_, ms.model_ks) = model, runner.eval_ks(cfg.native.ks, model.cfg.k_max)
    ms.notes += [f"native: {n}" for n in runner.beyond_k_max(cfg.native.ks, model.cfg.k_max)]
    n = sum(p.numel() for p in model.parameters())
    ms.info[runner.MODEL] = _meta("native", quant="fp32", trainable=n, total=n, train_s=None, mb=weights_mb(model))
    ms.notes.append(f"native: {desc}; pretrained once (params_trainable = all its weights, none updated here; "
                    "pretraining time is not re-measured: see its model card)")


def _seen_pool(cfg: CompareConfig, task: str, systems: list[SystemConfig], groups: int, tag: str) -> dict:
    """``groups`` groups per seen system (seed ``(cfg.seed, tag, task, system)``), pooled over the systems that share
    the first one's per-sample shapes."""
    mod, pools = task_registry.get(task), []
    for s in systems:
        rng = torch.Generator().manual_seed(stable_seed(cfg.seed, tag, task, s.name))
        pools.append(flatten_groups(mod.generate(s, groups, cfg.single_task.samples_per_group, rng)))
    shape = {k: v.shape[1:] for k, v in pools[0].items()}
    same = [p for p in pools if {k: v.shape[1:] for k, v in p.items()} == shape]
    return {k: torch.cat([p[k] for p in same]) for k in pools[0]}


def train_single_task(cfg: CompareConfig, ms: Methods, seen_of: dict[str, list[SystemConfig]], root: Path) -> None:
    """Per task, every configured net, trained on the seen systems sharing the first seen system's shapes (until its
    validation loss on held-out samples of them stops improving when ``single_task.eval_every`` is set), or reused
    from ``root`` (``single_task.cache``)."""
    c = cfg.single_task
    for t in cfg.tasks:
        mod = task_registry.get(t)
        pool = _seen_pool(cfg, t, seen_of[t], c.train_groups, "single-task-data")
        val = _seen_pool(cfg, t, seen_of[t], c.val_groups, "single-task-val") if c.val_groups else None
        data = {"seed": cfg.seed, "systems": [to_yaml(s) for s in seen_of[t]], "groups": c.train_groups,
                "val_groups": c.val_groups, "samples_per_group": c.samples_per_group}
        for kind in c.nets_for(t):
            name = f"{t}_{kind}"
            seed = stable_seed(cfg.seed, "single-task", name) % 2**31
            net, log = train_cached(mod, kind, pool, c, seed, val, root if c.cache else None, data)
            if log["cached"]:
                ms.notes.append(f"{name}: trained net reused from {root} (same setup hash; train wall s is the "
                                "original training's)")
            if log["curve"] is not None:
                ms.curves[name] = ("single_task", log["curve"])
            ms.nets.setdefault(t, {})[name] = net
            n = sum(p.numel() for p in net.parameters())
            ms.info[name] = _meta("single_task", quant="fp32", trainable=n, total=n, train_s=log["train_wall_s"],
                                  mb=weights_mb(net))


def train_llms(cfg: CompareConfig, ms: Methods, seen_of: dict[str, list[SystemConfig]], work: Path) -> None:
    """Build every LLM method, skip (with a note) those whose backbone weights are missing, train the others."""
    for m in tqdm(build_methods(cfg), desc="llm train", disable=not cfg.progress):
        why = missing_weights(m)
        if why:
            ms.notes.append(f"{m.name} skipped: {why}")
            continue
        if train_base(m, cfg, seen_of, work):
            ms.notes.append(f"{m.name}: trained adapter reused from {m.cfg.train.out_dir} (same config and data "
                            "hash; train wall s is the original training's)")
        if m.info["curve"] is not None:
            ms.curves[m.name] = ("llm", m.info["curve"])
        ms.llms.append(m)
        ms.info[m.name] = _meta("llm", m.backbone, m.adapter, m.quant, m.info["params_trainable"],
                                m.info["params_total"], m.info["train_wall_s"], m.info["weights_mb"])


def score_unit(cfg: CompareConfig, ms: Methods, task: str, system: SystemConfig, family: str, ks: list[int],
               n_shots: list[int], device: torch.device) -> M.Acc:
    """Every method on the episodes of one (task, family, system); ``ks``: native / context-baseline k values."""
    mod, acc = task_registry.get(task), M.Acc()
    chunks = list(runner.episodes(mod, system, cfg.episodes, max(ks + [0]) + 1, cfg.batch_size,
                                  (cfg.seed, "compare", family, system.name, task)))
    if ms.model is not None and task in ms.model.cfg.tasks:
        M.native(mod, chunks, ms.model, [k for k in ks if k in ms.model_ks], device, acc)
    if cfg.classical:
        err = M.classical(mod, chunks, ks, acc)
        ms.notes += [f"{task}/{family}/{system.name}: classical baselines failed: {err}"] if err else []
        C.add_trivial(mod, chunks, ms.nominal.get(task), acc)
    skipped = [m.name for m in ms.llms if not M.llm(m, cfg, mod, system, chunks, n_shots, acc)]
    skipped += [name for name, net in ms.nets.get(task, {}).items() if not M.single_task(name, net, mod, chunks, acc)]
    if skipped:
        ms.notes.append(f"{task}/{family}/{system.name}: input shapes unlike the training systems' (fixed-size "
                        f"encoders / nets), not evaluated: {', '.join(skipped)}")
    return acc


def _info(ms: Methods, acc: M.Acc) -> dict[str, dict]:
    for method, _, _ in acc.values:
        ms.info.setdefault(method, _meta("classical"))
    return ms.info


def check_convergence(cfg: CompareConfig, ms: Methods, task: str, family: str, accs: list[M.Acc]) -> None:
    """``converge.check_family`` rows of the task's learned methods (LLMs zero-shot, single-task nets) on the seen
    family, with the step counts of their curves."""
    learned = [((m.name, None, 0), "llm") for m in ms.llms] + [((n, None, None), "single_task")
                                                              for n in ms.nets.get(task, {})]
    for row in C.check_family(task, accs, learned, cfg.converge_z):
        curve = ms.curves.get(row["method"], (None, {}))[1]
        ms.convergence.append({**row, "family": family, "steps_run": curve.get("steps_run"),
                               "best_step": curve.get("best_step"), "stopped": curve.get("stopped")})


def evaluate_all(cfg: CompareConfig, ms: Methods, units: dict, sweeps: list, device: torch.device,
                 seen: str = "") -> list[dict]:
    """Rows of every unit (per system and pooled ``all`` per family) and every sweep point; convergence verdicts of
    the learned methods on the ``seen`` family (into ``ms.convergence``)."""
    ks = ms.model_ks or list(cfg.native.ks)
    sweep_k = max([k for k in ks if k <= cfg.native.table_k] or [ks[0]])
    rows: list[dict] = []
    n_units = sum(len(s) for u in units.values() for _, s in u) + len(sweeps)
    bar = tqdm(total=n_units, desc="compare", unit="system", disable=not cfg.progress)
    for task, fams in units.items():
        for fam, systems in fams:
            pooled, accs = M.Acc(), []
            for s in systems:
                acc = score_unit(cfg, ms, task, s, fam, ks, cfg.llm.n_shots, device)
                rows += M.rows(acc, {"task": task, "family": fam, "system": s.name, "sweep_value": None},
                               _info(ms, acc))
                pooled.merge(acc)
                accs.append(acc)
                bar.update(1)
            rows += M.rows(pooled, {"task": task, "family": fam, "system": runner.ALL, "sweep_value": None}, ms.info)
            if fam == seen:
                check_convergence(cfg, ms, task, fam, accs)
    for su in sweeps:
        acc = score_unit(cfg, ms, su.task, su.system, su.family, [sweep_k], [], device)
        rows += M.rows(acc, {"task": su.task, "family": su.family, "system": su.system.name,
                             "sweep_value": su.value}, _info(ms, acc))
        bar.update(1)
    bar.close()
    return rows + memory_rows(ms)


def memory_rows(ms: Methods) -> list[dict]:
    """One ``weights_mb`` row per trained / loaded method (task, family, system ``-``)."""
    return [{**{c: meta.get(c) for c in M.COLUMNS}, "method": name, "task": NA, "family": NA, "system": NA,
             "metric": "weights_mb", "value": meta["weights_mb"], "n_eval": 1}
            for name, meta in ms.info.items() if meta["kind"] != "classical"]


def sort_key(r: dict) -> tuple:
    num = lambda v: -1.0 if v is None else float(v)   # noqa: E731
    return (KIND_ORDER[r["kind"]], r["method"], r["task"], r["family"], r["system"], num(r["sweep_value"]),
            num(r["k"]), num(r["n_shots"]), r["metric"])


def _cell(col: str, v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if col in M.TIMING else f"{v:.10g}"
    return str(v)


def write_csv(rows: list[dict], path: Path) -> None:
    """``results.csv``: ``COLUMNS``, rows sorted deterministically, empty cells for None."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(M.COLUMNS)
        for r in sorted(rows, key=sort_key):
            w.writerow([_cell(c, r[c]) for c in M.COLUMNS])


def write_table(rows: list[dict], columns: tuple[str, ...], path: Path) -> None:
    """A CSV of ``rows`` with ``columns`` (empty cells for None)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(c, r.get(c)) for c in columns])


def run(cfg: CompareConfig, argv: list[str]) -> Path:
    """Run the comparison of ``cfg``; returns the output folder."""
    from icwm.compare.curves import write_curves
    from icwm.compare.plots import plot_all
    from icwm.compare.report import write_report
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = runner.resolve_device(cfg.device)
    ecfg = cfg.eval_config()
    families = runner.load_families(ecfg)
    units = {t: runner.units(ecfg, families, t) for t in cfg.tasks}
    seen_name = EvalConfig.family_name(cfg.families[0])       # the first family is the training ("seen") one
    seen_of = {t: dict(units[t]).get(seen_name, []) for t in cfg.tasks}
    empty = [t for t, s in seen_of.items() if not s]
    check(not empty, "families", f"a first (seen) family with systems for every task", empty)
    sweeps = sweep_units(cfg.sweeps, seen_of)                  # checked before the (long) training of the baselines
    ms = Methods()
    ms.nominal = {t: C.nominal_value(task_registry.get(t), seen_of[t], cfg.seed) for t in cfg.tasks
                  if t in C.NOMINAL_KEY and cfg.classical}
    if cfg.native.model != "none":
        load_native(cfg, ms, device)
    if cfg.single_task.enabled:
        train_single_task(cfg, ms, seen_of, cfg.cache_root("single_task"))
    if cfg.llm.enabled:
        train_llms(cfg, ms, seen_of, cfg.cache_root("llm"))
    rows = evaluate_all(cfg, ms, units, sweeps, device, seen_name)
    ttft_rows: list[dict] = []
    if cfg.ttft.enabled:
        ttft_rows, notes = run_ttft(cfg, ms.llms, ms.model, ms.convergence, device)
        ms.notes += notes
    tmp = Path(tempfile.mkdtemp(prefix=".compare-tmp-", dir=out))
    try:
        write_csv(rows, tmp / "results.csv")
        write_table(ms.convergence, C.COLUMNS, tmp / "convergence.csv")
        write_curves(ms.curves, tmp)
        if cfg.ttft.enabled:
            write_table(ttft_rows, runner.COLUMNS, tmp / "ttft.csv")
        elif (out / "ttft.csv").is_file():
            (out / "ttft.csv").unlink()                       # a stale section of an earlier run
        (tmp / "config.yaml").write_text(to_yaml(cfg))
        (tmp / "notes.json").write_text(json.dumps(list(dict.fromkeys(ms.notes)), indent=1))
        (tmp / "provenance.json").write_text(json.dumps(provenance(argv, device), indent=1))
        write_report(tmp)
        plot_all(tmp / "results.csv", tmp / "plots", cfg.native.table_k)
        for f in sorted(tmp.iterdir()):
            if (out / f.name).is_dir():
                shutil.rmtree(out / f.name)
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
