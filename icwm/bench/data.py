"""Data-engine benchmark: samples/s per task and the engine's overhead over Sionna's own channel generation.

For each task, shards of one system of the task's seen family are written with ``write_shards`` (generation, labels,
classical label solvers, encoding, tar writing, index) while the time spent inside the channel layer
(``channels.generate_drops`` / ``generate_dual_band``, i.e. Sionna's TR 38.901 generation for exactly those drops)
is measured by wrapping those two functions. Overhead = (total - channel) / channel; target <= 25 %.
"""
from __future__ import annotations

import contextlib
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


def measure(task: str, groups: int, samples: int) -> dict:
    """Write ``groups`` groups of ``samples`` samples for ``task`` and split the time into channel / engine."""
    system = load_family(f"configs/systems/{FAMILY[task]}.yaml")[SYSTEM.get(task, 0)]
    with tempfile.TemporaryDirectory() as tmp, channel_timer() as spent:
        cfg = DataConfig(out_dir=tmp, tasks=[task], systems=[system], groups_per_system=groups,
                         groups_per_shard=max(1, groups // 2), samples_per_group=samples, workers=1)
        t0 = time.perf_counter()
        summary = write_shards(cfg, progress=False)
        total = time.perf_counter() - t0
    overhead = (total - spent[0]) / max(spent[0], 1e-9)
    return {"name": f"engine overhead {task} ({system.name})", "value": overhead, "unit": "fraction of Sionna time",
            "target": f"<= {TARGET}", "met": overhead <= TARGET, "samples_per_s": summary.samples / total,
            "sionna_s": spent[0], "total_s": total, "samples": summary.samples}


def run(quick: bool = False) -> list[dict]:
    """One row per task (overhead, samples/s), then the overall overhead over all tasks."""
    torch.manual_seed(0)
    groups, samples = (2, 4) if quick else (8, 17)
    rows = [measure(t, groups, samples) for t in FAMILY]
    sionna, total = sum(r["sionna_s"] for r in rows), sum(r["total_s"] for r in rows)
    overall = (total - sionna) / sionna
    rows.append({"name": "engine overhead, all nine tasks", "value": overall, "unit": "fraction of Sionna time",
                 "target": f"<= {TARGET}", "met": overall <= TARGET, "sionna_s": sionna, "total_s": total,
                 "device": "cuda" if torch.cuda.is_available() else "cpu"})
    return rows
