"""Typed configuration of the evaluation entry point (``launch/evaluate.py``): ``EvalConfig``.

Loaded with ``icwm.config.load_config`` (defaults < YAML < ``key=value``); unknown keys and bad values raise
``ValueError`` naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from icwm.config import check
from icwm.tasks import TASKS
from icwm.wireless.sysconfig import SystemConfig

DEFAULT_KS = [0, 1, 2, 4, 8, 16, 32]


@dataclass
class TargetsConfig:
    """Thresholds of the issue's targets (the only numbers of the targets section that are not measured)."""

    family: str = "setups"           # family holding the paper operating points; "seen" is the fallback
    rate_ratio: float = 0.99         # pre_sr: model sum rate / WMMSE-20 sum rate >= this
    maxmin_gap_db: float = 0.5       # pre_mm: optimum min SINR - model min SINR <= this (dB)
    det_ser_vs_ml: float = 2.0       # det: model SER / ML SER <= this
    cp_nmse_db: float = -15.0        # cp: NMSE (dB of the mean) <= this
    unseen_k: int = 16               # demonstrations at which unseen is compared with seen
    unseen_rate_loss: float = 0.02   # pre_sr: seen - unseen fraction of WMMSE sum rate <= this
    unseen_nmse_loss_db: float = 1.0  # NMSE tasks: unseen - seen NMSE (dB) <= this
    monotone_tol: float = 0.1        # "improves with k": a step may worsen by <= this x |metric(k_max) - metric(0)|
    flat_tol: float = 0.02           # full-CSI tasks, "no worse with k": by <= this x |metric(0)| ...
    flat_tol_db: float = 0.1         # ... or, for metrics in dB, by <= this many dB
    step_z: float = 2.0              # a change within this many paired standard errors is not counted against k

    def __post_init__(self) -> None:
        check(0.0 < self.rate_ratio <= 1.5, "targets.rate_ratio", "a ratio in (0, 1.5]", self.rate_ratio)
        check(self.maxmin_gap_db >= 0, "targets.maxmin_gap_db", "a gap >= 0 dB", self.maxmin_gap_db)
        check(self.det_ser_vs_ml > 0, "targets.det_ser_vs_ml", "a ratio > 0", self.det_ser_vs_ml)
        check(self.unseen_k >= 0, "targets.unseen_k", "an integer >= 0", self.unseen_k)
        check(self.unseen_rate_loss >= 0, "targets.unseen_rate_loss", "a fraction >= 0", self.unseen_rate_loss)
        check(self.unseen_nmse_loss_db >= 0, "targets.unseen_nmse_loss_db", "a loss >= 0 dB", self.unseen_nmse_loss_db)
        check(self.monotone_tol >= 0, "targets.monotone_tol", "a tolerance >= 0", self.monotone_tol)
        check(self.flat_tol >= 0, "targets.flat_tol", "a tolerance >= 0", self.flat_tol)
        check(self.flat_tol_db >= 0, "targets.flat_tol_db", "a tolerance >= 0 dB", self.flat_tol_db)
        check(self.step_z >= 0, "targets.step_z", "a number of standard errors >= 0", self.step_z)


@dataclass
class SetupConfig:
    """One operating point: a task evaluated on one system only (family ``setups``), e.g. the issue's
    Zheng & Dai targets (pre_sr at 10 dB with Nt = 128, K = 4; det 4x4 at 20 dB; cp with 20 dB history)."""

    task: str = "pre_sr"
    system: SystemConfig = field(default_factory=SystemConfig)

    def __post_init__(self) -> None:
        check(self.task in TASKS, "setups.task", f"a task id among {TASKS}", self.task)


@dataclass
class EvalConfig:
    """Evaluation of the native model against the classical baselines on seen / unseen system families.

    Each family is ``<systems_dir>/<name>.yaml`` (``systems: [SystemConfig, ...]``), or a YAML path whose stem
    names the family. For every task x system, ``episodes`` episodes of ``k_max + 1`` pairs are generated once
    (seeded by ``seed``, family, system, task; never the training seeds, which hash a split name, not "eval").
    """

    model: str = "shipped"          # "shipped" (icwm/assets/icwm-small) | "none" (baselines only) | model directory
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))   # capped at the model's k_max
    families: list[str] = field(default_factory=lambda: ["seen", "unseen", "zheng_dai"])
    systems_dir: str = "configs/systems"
    # task -> family-file prefix: family "seen" of det is then <systems_dir>/det_seen.yaml (tasks whose natural
    # arrays differ: small receive arrays for det, single links for ce/cp/pf, dual band for bf/de/pe)
    task_prefix: dict[str, str] = field(default_factory=dict)
    setups: list[SetupConfig] = field(default_factory=list)   # family "setups": (task, system) operating points
    max_systems: int = 0            # >0: only the first N systems of each family (smoke runs)
    episodes: int = 128             # episodes per (task, system)
    batch_size: int = 64            # episodes generated and evaluated together
    seed: int = 1
    out_dir: str = "outputs/eval/default"
    device: str = "cpu"             # "cpu", "cuda", "cuda:N", "mps" or "auto" (cuda when available)
    targets: TargetsConfig = field(default_factory=TargetsConfig)

    def __post_init__(self) -> None:
        check(len(self.model) > 0, "model", "'shipped', 'none' or a model directory", self.model)
        check(len(self.tasks) > 0, "tasks", "a non-empty list of task ids", self.tasks)
        for t in self.tasks:
            check(t in TASKS, "tasks", f"task ids among {TASKS}", t)
        check(len(set(self.tasks)) == len(self.tasks), "tasks", "no repeated task id", self.tasks)
        check(len(self.ks) > 0 and all(k >= 0 for k in self.ks), "ks", "a non-empty list of integers >= 0", self.ks)
        self.ks = sorted(set(self.ks))
        check(len(self.families) > 0, "families", "a non-empty list of family names or YAML paths", self.families)
        names = [self.family_name(f) for f in self.families]
        check(len(set(names)) == len(names), "families", "distinct family names", names)
        check("setups" not in names, "families", "no family named 'setups' (reserved for the setups list)", names)
        for t in self.task_prefix:
            check(t in TASKS, "task_prefix", f"task ids among {TASKS}", t)
        check(self.targets.family in ["setups", *names], "targets.family", f"'setups' or one of the families {names}",
              self.targets.family)
        keys = [(s.task, s.system.name) for s in self.setups]
        check(len(set(keys)) == len(keys), "setups", "distinct (task, system.name) pairs", keys)
        check(self.max_systems >= 0, "max_systems", "an integer >= 0 (0 = all)", self.max_systems)
        check(self.episodes >= 1, "episodes", "an integer >= 1", self.episodes)
        check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        check(len(self.out_dir) > 0, "out_dir", "a directory path", self.out_dir)
        check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), "device",
              "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'", self.device)

    @staticmethod
    def family_name(entry: str) -> str:
        """Family name of a ``families`` entry (the file stem for a YAML path)."""
        return Path(entry).stem if entry.endswith((".yaml", ".yml")) else entry

    def family_path(self, entry: str, task: str | None = None) -> Path:
        """YAML file of a ``families`` entry (for ``task``: its ``task_prefix`` file when it has one)."""
        if entry.endswith((".yaml", ".yml")):
            return Path(entry)
        prefix = self.task_prefix.get(task) if task else None
        return Path(self.systems_dir) / (f"{prefix}_{entry}.yaml" if prefix else f"{entry}.yaml")
