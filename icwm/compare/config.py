"""Typed configuration of the head-to-head comparison (``launch/compare.py``): ``CompareConfig``.

Loaded with ``icwm.config.load_cli`` / ``load_config`` (defaults < YAML < ``key=value``); unknown keys and bad values
raise ``ValueError`` naming the field. Families, task-specific family files and episodes follow ``EvalConfig``
(``eval_config()`` builds one), so every method is scored on the episodes of ``icwm.eval.runner``; the optional
``ttft`` section (ICL vs test-time fine-tuning on the latent families) has its own (``ttft_eval_config()``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adapters_llm.config import ARCHS, METHODS
from icwm.config import check
from icwm.eval.config import DEFAULT_KS, EvalConfig
from icwm.tasks import TASKS, check_first_guess

NETS = ("mlp", "cnn", "gru", "lstm", "transformer")
CACHE_DIRS = {"llm": "llm_runs", "single_task": "single_task_runs", "ttft": "ttft_runs"}   # defaults under out_dir
SWEEP_FIELDS = ("snr_db", "num_users", "speed_kmh")


@dataclass
class NativeConfig:
    """The native in-context model: k demonstrations, no weight update."""

    model: str = "shipped"          # "shipped" (icwm/assets/icwm-small) | "none" (skip) | model directory
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))   # capped at the model's k_max
    table_k: int = 16               # k of the "k=16" column of the report (and of the sweeps)

    def __post_init__(self) -> None:
        check(len(self.model) > 0, "native.model", "'shipped', 'none' or a model directory", self.model)
        check(len(self.ks) > 0 and all(k >= 0 for k in self.ks), "native.ks", "a non-empty list of integers >= 0",
              self.ks)
        self.ks = sorted(set(self.ks))
        check(self.table_k in self.ks, "native.table_k", f"one of native.ks {self.ks} (its column is empty otherwise)",
              self.table_k)


@dataclass
class LLMConfig:
    """Adapted-LLM baselines: every backbone x adapter, trained on the seen family, then zero-shot and few-shot.

    ``base`` is a ``configs/adapters`` YAML (training schedule, widths); ``backbones[name]`` and
    ``adapter_overrides[peft]`` are ``key=value`` overrides of it. ``no_llm`` runs once (backbone ``-``).
    """

    enabled: bool = True
    base: str = "configs/adapters/debug.yaml"
    overrides: list[str] = field(default_factory=list)           # applied to every method
    backbones: dict[str, list[str]] = field(default_factory=dict)   # name (gpt2 | llama) -> overrides
    # name -> local weights directory (sets backbone.source=local, backbone.path=DIR); "" = as in ``backbones``
    backbone_paths: dict[str, str] = field(default_factory=dict)
    adapters: list[str] = field(default_factory=lambda: list(METHODS))
    adapter_overrides: dict[str, list[str]] = field(default_factory=dict)   # peft -> overrides
    train_groups: int = 4           # training groups per (task, seen system)
    val_groups: int = 1             # validation groups per (task, seen system) (early stopping: train.eval_every)
    samples_per_group: int = 16
    cache: bool = True              # reuse a trained adapter whose config + data hash matches (``cache_dir``)
    cache_dir: str = ""             # "" = <out_dir>/llm_runs
    n_shots: list[int] = field(default_factory=lambda: [16, 64, 256])   # few-shot N per target system (0 = none)
    few_shot_steps: int = 100
    few_shot_lr: float = 1e-4
    few_shot_batch: int = 16

    def __post_init__(self) -> None:
        check(len(self.base) > 0, "llm.base", "a configs/adapters YAML path", self.base)
        for name in self.backbones:
            check(name in ARCHS, "llm.backbones", f"names among {ARCHS}", name)
        for name in self.backbone_paths:
            check(name in self.backbones, "llm.backbone_paths", f"names among llm.backbones {list(self.backbones)}",
                  name)
        for a in self.adapters:
            check(a in METHODS, "llm.adapters", f"adapters among {METHODS}", a)
        for a in self.adapter_overrides:
            check(a in METHODS, "llm.adapter_overrides", f"keys among {METHODS}", a)
        check(self.train_groups >= 1 and self.samples_per_group >= 1, "llm.train_groups/samples_per_group",
              "positive integers", (self.train_groups, self.samples_per_group))
        check(self.val_groups >= 0, "llm.val_groups", "an integer >= 0", self.val_groups)
        check(all(n >= 1 for n in self.n_shots), "llm.n_shots", "integers >= 1 (zero-shot is always run)",
              self.n_shots)
        self.n_shots = sorted(set(self.n_shots))
        check(self.few_shot_steps >= 1, "llm.few_shot_steps", "an integer >= 1", self.few_shot_steps)
        check(self.few_shot_lr > 0 and self.few_shot_batch >= 1, "llm.few_shot_lr/few_shot_batch",
              "lr > 0, batch >= 1", (self.few_shot_lr, self.few_shot_batch))


@dataclass
class SingleTaskConfig:
    """Single-task small nets trained per task on the seen family (systems with the first seen system's shapes)."""

    enabled: bool = True
    nets: list[str] = field(default_factory=lambda: list(NETS))
    task_nets: dict[str, list[str]] = field(default_factory=dict)   # task -> nets used instead of ``nets``
    width: int = 64
    steps: int = 300
    supervised_steps: int = 100     # pre_sr / pre_mm: steps on the WMMSE / optimum label before the task loss
    batch_size: int = 32
    lr: float = 1e-3
    train_groups: int = 8
    val_groups: int = 0             # validation groups per seen system (held out, own seed)
    samples_per_group: int = 16
    eval_every: int = 0             # validation loss every N steps; 0 = train ``steps`` steps, no curve
    patience: int = 0               # stop after this many evaluations without improvement; 0 = run to ``steps``
    min_delta: float = 0.0          # improvement of the validation loss, relative to its value at step 0
    min_steps: int = 0              # no early stop before this step (a net on a plateau gets this long to leave it)
    cache: bool = True              # reuse a trained net whose setup hash matches (``icwm.compare.cache``)
    cache_dir: str = ""             # "" = <out_dir>/single_task_runs
    # tasks whose nets predict a correction to the task's first guess (TaskSpec.first_guess: LS + linear
    # interpolation for ce, repeat-last for cp), head zero-initialised so training starts from it
    residual: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_first_guess("single_task.residual", self.residual)
        for n in self.nets + [n for v in self.task_nets.values() for n in v]:
            check(n in NETS, "single_task.nets", f"nets among {NETS}", n)
        check(all(t in TASKS for t in self.task_nets), "single_task.task_nets", f"task ids from {TASKS}",
              sorted(self.task_nets))
        check(0 <= self.min_steps <= self.steps, "single_task.min_steps", f"in [0, {self.steps}]", self.min_steps)
        check(self.width >= 4 and self.steps >= 1 and self.batch_size >= 1, "single_task.width/steps/batch_size",
              "width >= 4, steps >= 1, batch >= 1", (self.width, self.steps, self.batch_size))
        check(0 <= self.supervised_steps <= self.steps, "single_task.supervised_steps", f"in [0, {self.steps}]",
              self.supervised_steps)
        check(self.train_groups >= 1 and self.samples_per_group >= 1, "single_task.train_groups/samples_per_group",
              "positive integers", (self.train_groups, self.samples_per_group))
        check(self.eval_every >= 0 and self.patience >= 0 and self.min_delta >= 0,
              "single_task.eval_every/patience/min_delta", "values >= 0",
              (self.eval_every, self.patience, self.min_delta))
        check(self.eval_every == 0 or self.val_groups >= 1, "single_task.val_groups",
              "an integer >= 1 when single_task.eval_every > 0", self.val_groups)
        check(self.patience == 0 or self.eval_every > 0, "single_task.patience", "0 unless single_task.eval_every > 0",
              self.patience)

    def nets_for(self, task: str) -> list[str]:
        """Nets trained for ``task``."""
        return list(self.task_nets.get(task, self.nets))


@dataclass
class SweepConfig:
    """System variants for the curves: ``param`` of one seen system (``base``; "" = the task's first seen system)
    set to each value (snr_db and speed_kmh as a fixed [v, v] range, num_users as an integer)."""

    name: str = "snr"               # family ``sweep_<name>``
    tasks: list[str] = field(default_factory=lambda: ["pre_sr"])
    param: str = "snr_db"           # snr_db | num_users | speed_kmh
    values: list[float] = field(default_factory=lambda: [0.0, 10.0, 20.0])
    base: str = ""

    def __post_init__(self) -> None:
        check(self.name.isidentifier(), "sweeps.name", "an identifier (letters, digits, _)", self.name)
        check(len(self.tasks) > 0 and all(t in TASKS for t in self.tasks), "sweeps.tasks",
              f"a non-empty list of task ids from {TASKS}", self.tasks)
        check(self.param in SWEEP_FIELDS, "sweeps.param", f"one of {SWEEP_FIELDS}", self.param)
        check(len(self.values) > 0, "sweeps.values", "a non-empty list of numbers", self.values)


FILLS = ("prior", "zero")


@dataclass
class TTFTConfig:
    """ICL vs test-time fine-tuning on the latent families (``icwm.compare.ttft``): on the same episodes, the native
    model reads k demonstrations, one adapted-LLM variant is fine-tuned on the same k labelled pairs of each episode
    (restored before the next), the classical latent baselines (oracle / blind / in_context) fit theta to them."""

    enabled: bool = False
    families: list[str] = field(default_factory=lambda: ["latent_unseen"])   # as ``families`` (task_prefix applies)
    tasks: list[str] = field(default_factory=list)      # [] = the comparison's tasks
    max_systems: int = 0            # >0: only the first N systems of each family
    episodes: int = 64              # episodes per (task, system)
    ks: list[int] = field(default_factory=lambda: [4, 16])   # demonstrations = fine-tuning pairs per episode
    variant: str = ""               # LLM method fine-tuned at test time; "" = the best on the seen family (ttft.py)
    max_steps: int = 50             # step cap of one episode's fine-tune
    patience: int = 3               # stop after this many evaluations without a lower loss on the k pairs
    min_delta: float = 0.0          # relative loss decrease that counts as lower
    eval_every: int = 1             # loss on the k pairs every N steps
    lr: float = 1e-3
    batch: int = 16                 # pairs per step (drawn from the k pairs; min(batch, k))
    fill: str = "prior"             # inputs the latent form omits, for the LLM: "prior" (prior_<name>, else 0) | "zero"
    cache: bool = True              # reuse a system's results whose setup hash matches (``icwm.compare.cache``)
    cache_dir: str = ""             # "" = <out_dir>/ttft_runs

    def __post_init__(self) -> None:
        check(len(self.families) > 0, "ttft.families", "a non-empty list of family names or YAML paths",
              self.families)
        check(all(t in TASKS for t in self.tasks), "ttft.tasks", f"task ids among {TASKS}", self.tasks)
        check(self.max_systems >= 0 and self.episodes >= 1, "ttft.max_systems/episodes",
              "max_systems >= 0, episodes >= 1", (self.max_systems, self.episodes))
        check(len(self.ks) > 0 and all(k >= 1 for k in self.ks), "ttft.ks", "a non-empty list of integers >= 1",
              self.ks)
        self.ks = sorted(set(self.ks))
        check(self.max_steps >= 1 and self.patience >= 1 and self.eval_every >= 1,
              "ttft.max_steps/patience/eval_every", "integers >= 1", (self.max_steps, self.patience, self.eval_every))
        check(self.min_delta >= 0 and self.lr > 0 and self.batch >= 1, "ttft.min_delta/lr/batch",
              "min_delta >= 0, lr > 0, batch >= 1", (self.min_delta, self.lr, self.batch))
        check(self.fill in FILLS, "ttft.fill", f"one of {FILLS}", self.fill)


@dataclass
class CompareConfig:
    """Native ICWM vs adapted LLMs vs single-task nets vs classical baselines on seen / unseen / sweep systems."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    families: list[str] = field(default_factory=lambda: ["seen", "unseen"])
    systems_dir: str = "configs/systems"
    task_prefix: dict[str, str] = field(default_factory=dict)   # as EvalConfig.task_prefix
    max_systems: int = 0            # >0: only the first N systems of each family
    episodes: int = 128             # evaluation episodes per (task, system): the same for every method
    batch_size: int = 64            # episodes per evaluation batch (the latency batch)
    seed: int = 1
    device: str = "cpu"             # "cpu", "cuda", "cuda:N" or "auto"
    out_dir: str = "outputs/compare/default"
    progress: bool = True
    classical: bool = True
    converge_z: float = 2.0         # a learned method "converged" = beats its task's trivial baseline on the seen
                                    # family by more than this many standard errors (icwm.compare.converge)
    native: NativeConfig = field(default_factory=NativeConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    single_task: SingleTaskConfig = field(default_factory=SingleTaskConfig)
    sweeps: list[SweepConfig] = field(default_factory=list)
    ttft: TTFTConfig = field(default_factory=TTFTConfig)

    def __post_init__(self) -> None:
        check(len(self.out_dir) > 0, "out_dir", "a directory path", self.out_dir)
        check(self.converge_z >= 0, "converge_z", "a float >= 0", self.converge_z)
        names = [s.name for s in self.sweeps]
        check(len(set(names)) == len(names), "sweeps", "distinct sweep names", names)
        for s in self.sweeps:
            check(set(s.tasks) <= set(self.tasks), f"sweeps.{s.name}.tasks", f"tasks among {self.tasks}", s.tasks)
        check(set(self.ttft.tasks) <= set(self.tasks), "ttft.tasks", f"tasks among {self.tasks}", self.ttft.tasks)
        self.eval_config()          # validates tasks, families, task_prefix, episodes, batch_size, device
        self.ttft_eval_config()

    def cache_root(self, section: str) -> Path:
        """Cache folder of ``section`` (``llm``, ``single_task``, ``ttft``): its ``cache_dir``, else
        ``<out_dir>/<CACHE_DIRS[section]>``."""
        return Path(getattr(self, section).cache_dir or Path(self.out_dir) / CACHE_DIRS[section])

    def eval_config(self) -> EvalConfig:
        """The ``EvalConfig`` whose families, episodes and seeds every method shares."""
        return EvalConfig(model=self.native.model, tasks=list(self.tasks), ks=list(self.native.ks),
                          families=list(self.families), systems_dir=self.systems_dir,
                          task_prefix=dict(self.task_prefix), max_systems=self.max_systems, episodes=self.episodes,
                          batch_size=self.batch_size, seed=self.seed, out_dir=self.out_dir, device=self.device)

    def ttft_eval_config(self) -> EvalConfig:
        """The ``EvalConfig`` of the ``ttft`` section: its families, tasks, k values, episodes and systems, the
        comparison's task_prefix, batch size, seed and device."""
        t = self.ttft
        return EvalConfig(model=self.native.model, tasks=list(t.tasks or self.tasks), ks=list(t.ks),
                          families=list(t.families), systems_dir=self.systems_dir, task_prefix=dict(self.task_prefix),
                          max_systems=t.max_systems, episodes=t.episodes, batch_size=self.batch_size, seed=self.seed,
                          out_dir=self.out_dir, device=self.device)
