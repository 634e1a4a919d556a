"""Data-engine benchmark: samples/s per task and the engine's overhead over Sionna's own channel generation.

For each task, shards of one system of the task's seen family are written with ``write_shards`` (generation, labels,
classical label solvers, encoding, tar writing, index) while the time spent inside the channel layer
(``channels.generate_drops`` / ``generate_dual_band``, i.e. Sionna's TR 38.901 generation for exactly those drops)
is measured by wrapping those two functions. Overhead = (total - channel) / channel; target <= 25 %.

Fast channel path (``SystemConfig.fast``, the default; ``fast=false`` in the data config gives Sionna's own step
11): for pre_sr, pre_mm, bf, de, pe the same shards are written through both paths, interleaved in one process and
repeated (best samples/s of each path; target >= 5x), and the channel tensors of both paths from the same seed are
compared (relative Frobenius difference and largest entry difference over the RMS entry).
"""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
import time
from typing import Iterator

import torch

from icwm.data.config import DataConfig, load_family
from icwm.data.shards import write_shards
from icwm.wireless import channels

FAMILY = {"pre_sr": "seen", "pre_mm": "seen", "det": "det_seen", "ce": "link_seen", "cp": "link_seen",
          "pf": "link_seen", "bf": "dual_seen", "de": "dual_seen", "pe": "dual_seen"}
SYSTEM = {"pre_sr": 1, "pre_mm": 1}   # seen_uma_nlos_2p4_upa16x8_k4 (Nt = 128, K = 4) for the precoding tasks
TARGET = 0.25
FAST_TASKS = ("pre_sr", "pre_mm", "bf", "de", "pe")
FAST_TARGET = 5.0          # x samples/s of the Sionna path (the target for the pretraining data)
FAST_TOL = 1e-5            # relative Frobenius difference of the channel tensors, fast vs Sionna


@contextlib.contextmanager
def channel_timer() -> Iterator[list[float]]:
    """Accumulate the seconds spent in the channel layer while the context is open: yields a one-item list."""
    spent = [0.0]
    originals = {n: getattr(channels, n) for n in ("generate_drops", "generate_dual_band")}

    def wrap(fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t0
        return timed

    for name, fn in originals.items():
        setattr(channels, name, wrap(fn))
    try:
        yield spent
    finally:
        for name, fn in originals.items():
            setattr(channels, name, fn)


def bench_system(task: str):
    """The system of ``task``'s seen family the benchmark writes (``SYSTEM``, else the first)."""
    return load_family(f"configs/systems/{FAMILY[task]}.yaml")[SYSTEM.get(task, 0)]


def measure(task: str, groups: int, samples: int, fast: bool = True) -> dict:
    """Write ``groups`` groups of ``samples`` samples for ``task`` (two shards, step 11 through the fast path or
    Sionna's) and split the time into channel / engine."""
    system = bench_system(task)
    with tempfile.TemporaryDirectory() as tmp, channel_timer() as spent:
        cfg = DataConfig(out_dir=tmp, tasks=[task], systems=[system], groups_per_system=groups,
                         groups_per_shard=max(1, groups // 2), samples_per_group=samples, workers=1, fast=fast)
        t0 = time.perf_counter()
        summary = write_shards(cfg, progress=False)
        total = time.perf_counter() - t0
    overhead = (total - spent[0]) / max(spent[0], 1e-9)
    return {"name": f"engine overhead {task} ({system.name})", "value": overhead, "unit": "fraction of Sionna time",
            "target": f"<= {TARGET}", "met": overhead <= TARGET, "samples_per_s": summary.samples / total,
            "sionna_s": spent[0], "total_s": total, "samples": summary.samples, "fast": fast}


def fast_speedup(task: str, groups: int, samples: int, repeats: int) -> dict:
    """Samples/s of shard writing for ``task`` through Sionna's step 11 and the fast path, measured in ``repeats``
    back-to-back pairs after one warm-up of both. Value: the median of the pairs' ratios (robust to a machine whose
    load drifts); the ratio of the best of each path is kept beside it."""
    for fast in (False, True):
        measure(task, 1, 2, fast)
    runs = {False: [], True: []}
    for _ in range(repeats):
        for fast in (False, True):
            runs[fast].append(measure(task, groups, samples, fast)["samples_per_s"])
    ratio = statistics.median(f / r for f, r in zip(runs[True], runs[False]))
    best = max(runs[True]) / max(runs[False])
    return {"name": f"fast channel path speed-up {task} ({bench_system(task).name})", "value": ratio,
            "unit": "x samples/s of shard writing (median of pairs)", "target": f">= {FAST_TARGET:g}x the Sionna path",
            "met": ratio >= FAST_TARGET, "ratio_of_best": best,
            "samples_per_s": {"sionna": max(runs[False]), "fast": max(runs[True])},
            "runs_samples_per_s": {"sionna": runs[False], "fast": runs[True]}, "samples": groups * samples}


def channel_tensors(task: str, fast: bool, groups: int, samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The channel tensors ``task`` draws for one shard of ``groups`` groups, through either path, same seed."""
    system = dataclasses.replace(bench_system(task), fast=fast)
    rng = torch.Generator().manual_seed(seed)
    if FAMILY[task] == "dual_seen":
        dual = channels.generate_dual_band(dataclasses.replace(system, num_users=samples), groups, rng)
        return {"h_sub6": dual.h_sub6, "h_mmw": dual.h_mmw, "pathloss_db": dual.pathloss_db}
    drops = channels.generate_drops(dataclasses.replace(system, num_subcarriers=1), groups * samples, 1, rng)
    return {"h": drops.h, "pathloss_db": drops.pathloss_db}


def fast_difference(tasks: list[str], groups: int, samples: int) -> dict:
    """Fast vs Sionna path on the same draws of the system ``tasks`` share: relative Frobenius difference (worst
    tensor) and the largest entry difference over the RMS entry; the path loss must agree exactly."""
    ref, fast = (channel_tensors(tasks[0], f, groups, samples) for f in (False, True))
    rel = {k: float((fast[k] - ref[k]).norm() / ref[k].norm()) for k in ref if k.startswith("h")}
    peak = {k: float((fast[k] - ref[k]).abs().max() / ref[k].abs().pow(2).mean().sqrt()) for k in rel}
    same = torch.equal(fast["pathloss_db"], ref["pathloss_db"])
    worst = max(rel.values())
    return {"name": f"fast channel path difference {'/'.join(tasks)} ({bench_system(tasks[0]).name})",
            "value": worst, "unit": "relative Frobenius", "target": f"<= {FAST_TOL:g} vs Sionna, equal path loss",
            "met": worst <= FAST_TOL and same, "relative_frobenius": rel, "max_abs_over_rms": peak,
            "pathloss_equal": same}


def fast_rows(quick: bool = False) -> list[dict]:
    """Speed-up of the fast path for each of ``FAST_TASKS``, then its channel difference per benchmark system."""
    groups, samples, repeats = (2, 4, 1) if quick else (16, 17, 5)
    rows = [fast_speedup(task, groups, samples, repeats) for task in FAST_TASKS]
    by_system: dict[tuple, list[str]] = {}
    for task in FAST_TASKS:
        by_system.setdefault((FAMILY[task], SYSTEM.get(task, 0)), []).append(task)
    return rows + [fast_difference(tasks, groups // 2, samples) for tasks in by_system.values()]


def run(quick: bool = False) -> list[dict]:
    """One row per task (overhead, samples/s, fast path), the overall overhead over all tasks, then the fast
    path's speed-up over Sionna's step 11 and its channel difference (``fast_rows``)."""
    torch.manual_seed(0)
    groups, samples = (2, 4) if quick else (8, 17)
    rows = [measure(t, groups, samples) for t in FAMILY]
    sionna, total = sum(r["sionna_s"] for r in rows), sum(r["total_s"] for r in rows)
    overall = (total - sionna) / sionna
    rows.append({"name": "engine overhead, all nine tasks", "value": overall, "unit": "fraction of Sionna time",
                 "target": f"<= {TARGET}", "met": overall <= TARGET, "sionna_s": sionna, "total_s": total,
                 "device": "cuda" if torch.cuda.is_available() else "cpu"})
    return rows + fast_rows(quick)
