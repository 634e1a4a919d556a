"""Typed configuration of the data engine: shard generation (``DataConfig``) and episode sampling
(``EpisodeConfig``), plus the loader of system-configuration families (``configs/systems/*.yaml``).

Both trees load with ``icwm.config.load_config`` (defaults < YAML < ``key=value``); unknown keys and bad
values raise ``ValueError`` naming the field.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from icwm import tasks as task_registry
from icwm.config import check, load_config
from icwm.wireless.sysconfig import SystemConfig

SPLITS = ("train", "test")
SOURCES = ("shards", "generate")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class Family:
    """A family of system configurations: the content of one ``configs/systems/<name>.yaml``."""

    systems: list[SystemConfig] = field(default_factory=list)


def load_family(path: str | Path) -> list[SystemConfig]:
    """Load ``systems: [SystemConfig, ...]`` from a YAML file.

    Args:
        path: YAML file with one key ``systems``.

    Returns:
        The list of validated ``SystemConfig`` (at least one).
    """
    fam = load_config(Family, path)
    check(len(fam.systems) > 0, f"families[{str(path)!r}].systems", "at least one system", fam.systems)
    return fam.systems


def resolve_systems(families: list[str], systems: list[SystemConfig], field_name: str) -> list[SystemConfig]:
    """Systems of the listed family files followed by the inline ones; names must be unique and file-safe.

    Args:
        families: YAML paths (relative paths are taken from the working directory).
        systems: inline ``SystemConfig`` entries.
        field_name: config field reported in errors.

    Returns:
        The concatenated list; its order defines the system index used in shard seeds.
    """
    for path in families:
        check(Path(path).is_file(), field_name.split("/")[0], "existing system family YAML files (paths from the "
              f"working directory {Path.cwd()})", path)
    out = [s for path in families for s in load_family(path)] + list(systems)
    check(len(out) > 0, field_name, "at least one system (families or inline systems)", out)
    names = [s.name for s in out]
    for name in names:
        check(bool(_SAFE_NAME.match(name)), f"{field_name}.name", "letters, digits, '_', '.', '+', '-'", name)
    dup = sorted({n for n in names if names.count(n) > 1})
    check(not dup, f"{field_name}.name", "unique system names", dup)
    return out


def _check_tasks(ids: list[str], field_name: str) -> None:
    check(len(ids) > 0, field_name, "a non-empty list of task ids", ids)
    for t in ids:
        check(t in task_registry.TASKS, field_name, f"task ids among {task_registry.TASKS}", t)
    check(len(set(ids)) == len(ids), field_name, "no repeated task id", ids)


@dataclass
class DataConfig:
    """Shard generation: which tasks, which systems, how many groups, where to write.

    One shard holds ``groups_per_shard`` groups (the last shard of a (task, system) pair may hold fewer)
    of ONE task and ONE system, each group ``samples_per_group`` samples sharing the configuration.
    """

    out_dir: str = "data/shards/debug"     # shards and index.json are written here
    split: str = "train"                   # "train" | "test" (enters the shard seeds and file names)
    seed: int = 0                          # base seed; shard seed = stable hash(seed, split, task, system, shard)
    tasks: list[str] = field(default_factory=lambda: ["pre_sr"])
    task_groups: dict[str, int] = field(default_factory=dict)   # task -> groups per system (overrides)
    groups_per_system: int = 8             # groups per (task, system) for tasks absent from task_groups
    groups_per_shard: int = 4
    samples_per_group: int = 16
    families: list[str] = field(default_factory=list)           # configs/systems/*.yaml paths
    systems: list[SystemConfig] = field(default_factory=list)   # inline systems (after the families')
    task_families: dict[str, list[str]] = field(default_factory=dict)  # task -> families used instead of the above
    workers: int = 1                       # generation processes (spawn); 1 = in this process
    verify_existing: bool = True           # resume: re-hash existing shards before skipping them
    rank_timeout_s: float = 21600.0        # several ranks (torchrun): longest wait for the other ranks, then fail
    oracle: bool = True                    # false: latent systems carry no ce / cp / pf oracle fields (pretraining
                                           # data needs none; latent.oracle_snapshots is set to 0)
    fast: bool = True                      # false: every system's step 11 through Sionna's own generator
                                           # (SystemConfig.fast = false) instead of icwm.wireless.fastcoef

    def __post_init__(self) -> None:
        check(self.split in SPLITS, "split", f"one of {SPLITS}", self.split)
        check(len(self.out_dir) > 0, "out_dir", "a directory path", self.out_dir)
        _check_tasks(self.tasks, "tasks")
        for t, n in self.task_groups.items():
            check(t in self.tasks, "task_groups", f"keys among tasks {self.tasks}", t)
            check(n >= 1, f"task_groups.{t}", "an integer >= 1", n)
        for t in self.task_families:
            check(t in self.tasks, "task_families", f"keys among tasks {self.tasks}", t)
        check(self.groups_per_system >= 1, "groups_per_system", "an integer >= 1", self.groups_per_system)
        check(self.groups_per_shard >= 1, "groups_per_shard", "an integer >= 1", self.groups_per_shard)
        check(self.samples_per_group >= 1, "samples_per_group", "an integer >= 1", self.samples_per_group)
        check(self.workers >= 1, "workers", "an integer >= 1", self.workers)
        check(self.rank_timeout_s > 0, "rank_timeout_s", "a number of seconds > 0", self.rank_timeout_s)

    def groups_for(self, task: str) -> int:
        """Groups per system for ``task`` (``task_groups`` override, else ``groups_per_system``)."""
        return self.task_groups.get(task, self.groups_per_system)

    def shards_for(self, task: str) -> int:
        """Shards per system for ``task``: ceil(groups / groups_per_shard)."""
        return math.ceil(self.groups_for(task) / self.groups_per_shard)

    def load_systems(self) -> list[SystemConfig]:
        """All systems (family files, then inline), validated; their order is the system index."""
        return resolve_systems(self.families, self.systems, "families/systems")

    def systems_for(self, task: str) -> list[SystemConfig]:
        """Systems used for ``task``: its ``task_families`` entry if any (e.g. small arrays for det or cp),
        else the shared families + inline systems. Their order is the task's system index. ``oracle`` / ``fast``
        false rewrite every system (no oracle fields / Sionna's own step 11)."""
        if task in self.task_families:
            systems = resolve_systems(self.task_families[task], [], f"task_families.{task}")
        else:
            systems = self.load_systems()
        systems = systems if self.oracle else [without_oracle(s) for s in systems]
        return systems if self.fast else [dataclasses.replace(s, fast=False) for s in systems]


def without_oracle(system: SystemConfig) -> SystemConfig:
    """``system`` with ``latent.oracle_snapshots = 0`` (no oracle fields are generated)."""
    return dataclasses.replace(system, latent=dataclasses.replace(system.latent, oracle_snapshots=0))


@dataclass
class EpisodeConfig:
    """Episode sampling for training/evaluation: k demos + 1 query from one group, batches of one task.

    ``source="shards"`` reads ``shards_dir/index.json``; ``source="generate"`` calls the tasks' ``generate``
    on the fly for the systems of ``families`` + ``systems``.
    """

    source: str = "shards"                 # "shards" | "generate"
    shards_dir: str = ""                   # directory with index.json (source=shards)
    families: list[str] = field(default_factory=list)           # source=generate
    systems: list[SystemConfig] = field(default_factory=list)   # source=generate, inline
    task_weights: dict[str, float] = field(default_factory=dict)  # task -> weight; {} = uniform over the source's
    k_min: int = 0                         # demos per episode drawn uniformly in [k_min, k_max] per batch
    k_max: int = 8
    k_ramp: int = 0                        # curriculum: the upper bound of k rises linearly from k_min to k_max over
                                           # the first k_ramp global batches of the run (0 = k_max from the start)
    batch_size: int = 8                    # episodes per batch (per rank)
    seed: int = 0
    episodes_per_group: int = 1            # source=shards: episodes drawn from each group per pass
    batches_per_epoch: int = 0             # 0: one pass over the shards' episodes (required >0 for generate)
    cache_shards: int = 8                  # decoded shards kept in memory per process

    def __post_init__(self) -> None:
        check(self.source in SOURCES, "source", f"one of {SOURCES}", self.source)
        check(self.k_min >= 0, "k_min", "an integer >= 0", self.k_min)
        check(self.k_min <= self.k_max, "k_min", f"<= k_max ({self.k_max})", self.k_min)
        check(self.k_ramp >= 0, "k_ramp", "an integer >= 0", self.k_ramp)
        check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check(self.episodes_per_group >= 1, "episodes_per_group", "an integer >= 1", self.episodes_per_group)
        check(self.batches_per_epoch >= 0, "batches_per_epoch", "an integer >= 0", self.batches_per_epoch)
        check(self.cache_shards >= 1, "cache_shards", "an integer >= 1", self.cache_shards)
        for t, w in self.task_weights.items():
            check(t in task_registry.TASKS, "task_weights", f"task ids among {task_registry.TASKS}", t)
            check(w >= 0 and math.isfinite(w), f"task_weights.{t}", "a finite weight >= 0", w)
        if self.task_weights:
            check(sum(self.task_weights.values()) > 0, "task_weights", "at least one positive weight",
                  self.task_weights)
        if self.source == "shards":
            check(len(self.shards_dir) > 0, "shards_dir", "a directory with index.json (source=shards)",
                  self.shards_dir)
        else:
            check(len(self.task_weights) > 0, "task_weights", "a non-empty mapping task -> weight "
                  "(source=generate)", self.task_weights)
            check(self.batches_per_epoch > 0, "batches_per_epoch", "an integer > 0 (source=generate)",
                  self.batches_per_epoch)
