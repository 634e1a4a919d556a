"""Data-generation throughput of the latent form against the given form on the same systems.

For each task one system of its seen family is written as shards (``write_shards``, one process) twice: as given and
switched to ``form: latent`` (with the ce / cp / pf oracle fields at the system's ``latent.oracle_snapshots`` and,
separately, without them as pretraining data is written). Rows give samples/s of each and the latent / given ratio.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time

import torch

from icwm.bench.data import FAMILY, SYSTEM
from icwm.data.config import DataConfig, load_family
from icwm.data.shards import write_shards
from icwm.wireless.sysconfig import SystemConfig

ORACLE_TASKS = ("ce", "cp", "pf")


def samples_per_s(task: str, system: SystemConfig, groups: int, samples: int) -> float:
    """Samples/s of writing ``groups`` x ``samples`` samples of ``task`` on ``system`` to shards."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DataConfig(out_dir=tmp, tasks=[task], systems=[system], groups_per_system=groups,
                         groups_per_shard=max(1, groups // 2), samples_per_group=samples, workers=1)
        t0 = time.perf_counter()
        summary = write_shards(cfg, progress=False)
        return summary.samples / (time.perf_counter() - t0)


def measure(task: str, groups: int, samples: int) -> list[dict]:
    """Given vs latent (with and, for ce / cp / pf, without the oracle) rows of one task."""
    given = load_family(f"configs/systems/{FAMILY[task]}.yaml")[SYSTEM.get(task, 0)]
    latent = dataclasses.replace(given, form="latent")
    variants = [("latent", latent)]
    if task in ORACLE_TASKS:
        no_oracle = dataclasses.replace(latent, latent=dataclasses.replace(latent.latent, oracle_snapshots=0))
        variants.append(("latent, no oracle", no_oracle))
    base = samples_per_s(task, given, groups, samples)
    rows = [{"name": f"given {task} ({given.name})", "value": base, "unit": "samples/s"}]
    for label, system in variants:
        rate = samples_per_s(task, system, groups, samples)
        rows.append({"name": f"{label} {task} ({given.name})", "value": rate, "unit": "samples/s",
                     "ratio_to_given": rate / base})
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows for every task (quick: two tiny tasks)."""
    torch.manual_seed(0)
    groups, samples = (1, 3) if quick else (8, 17)
    names = ("de", "pe") if quick else tuple(FAMILY)
    return [row for t in names for row in measure(t, groups, samples)]
