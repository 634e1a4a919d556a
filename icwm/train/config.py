"""Typed configuration of pretraining (``launch/pretrain.py``): model, data, optimiser, loop, DeepSpeed.

Loaded with ``icwm.config.load_config(PretrainConfig, yaml, overrides)`` (defaults < YAML < ``key=value``);
unknown keys and bad values raise ``ValueError`` naming the field. Derived values (global batch, resolved
precision) are methods, computed in one place.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from icwm.config import check
from icwm.data.config import EpisodeConfig
from icwm.model import ModelConfig

PRECISIONS = ("auto", "fp32", "bf16")
NONFINITE = ("stop", "skip")
ZERO_STAGES = (0, 1, 2, 3)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``; global-norm gradient clipping."""

    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1          # applied to matrices only (not to biases, norms, embeddings' 1-d params)
    probe_decay: bool = True           # also on the latent probe's matrices (``probes.*``, ``fit_probes.*``): decay
                                       # pulls a regression read-out's estimates towards its bias (the nominal)
    icr_lr_mult: float = 1.0           # lr multiplier of the in-context ridges' scalars (``*.icr.*``: log-ridge,
                                       # slope, pooling, table). Adam moves a parameter by about lr per step, and a
                                       # log-ridge may need several units. small.yaml: 10 (set before its A/B, with
                                       # the ridge and pool tables; docs/results/icr_k1_s31, v24_candidate)
    warmup_steps: int = 100            # optimiser steps of linear warm-up from lr / warmup_steps
    min_lr_ratio: float = 0.1          # final lr of the cosine = min_lr_ratio * lr
    clip: float = 1.0                  # max global gradient norm (0 = no clipping)

    def __post_init__(self) -> None:
        check(self.lr > 0, "optim.lr", "a positive learning rate", self.lr)
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas",
              "two floats in [0, 1)", self.betas)
        check(self.eps > 0, "optim.eps", "a positive float", self.eps)
        check(self.weight_decay >= 0, "optim.weight_decay", "a float >= 0", self.weight_decay)
        check(self.icr_lr_mult > 0, "optim.icr_lr_mult", "a positive float", self.icr_lr_mult)
        check(self.warmup_steps >= 0, "optim.warmup_steps", "an integer >= 0", self.warmup_steps)
        check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", "a float in [0, 1]", self.min_lr_ratio)
        check(self.clip >= 0, "optim.clip", "a float >= 0 (0 = no clipping)", self.clip)


@dataclass
class TrainConfig:
    """The loop: steps are optimiser steps; one sampler batch per micro step."""

    steps: int = 1000                  # optimiser steps in total
    grad_accum: int = 1                # micro steps per optimiser step
    seed: int = 0                      # model init and dropout (the data streams use data.seed)
    log_every: int = 10                # optimiser steps between TensorBoard scalars
    eval_every: int = 0                # optimiser steps between evaluations, also run at the end (0 = never)
    eval_batches: int = 1              # held-out batches per task per evaluation
    eval_baselines: bool = True        # also score the classical baselines on the held-out batches
    ckpt_every: int = 500              # optimiser steps between checkpoints (0 = only at the end)
    keep_last: int = 2                 # complete checkpoints kept (older ones are deleted; 0 = keep all)
    out_dir: str = "outputs/pretrain/run"
    resume: str = "auto"               # "auto" (newest complete checkpoint in out_dir, else fresh) | "none" | path
    init_from: str = ""                # model directory (save_pretrained) whose weights start a fresh run; modules
                                       # absent there keep their initialisation ("" = random init)
    export: bool = True                # write out_dir/model (safetensors + config.yaml) at the end
    num_workers: int = 0               # DataLoader workers per rank (0 = in process)
    latent_weight: float = 1.0         # weight of the latent probe's loss (its squared error in LATENT_SCALES units,
                                       # O(0.1) at k = 0, next to task losses of O(1))
    latent_given: bool = True          # the probe's loss also on latents the batch states as inputs (the given
                                       # form's SNR, which the head reads instead of the estimate)
    latent_unapplied_weight: float = 1.0  # multiplier of that loss on offsets the batch's form does not apply (the
                                       # given form's bf panel / de, pe power offsets, truly 0): bf's head rotates
                                       # its beam by the estimate, so a stray degree there costs the given form
                                       # (docs/results/bf_given_s39)
    dwa_temperature: float = 2.0       # DWA temperature T
    dwa_window: int = 20               # optimiser steps per DWA window
    progress: bool = True              # tqdm bar on rank 0
    nonfinite: str = "stop"            # a non-finite loss or gradient: "stop" (error naming step, task, records) |
                                       # "skip" (drop the batch / leave the step unapplied, count it, go on)
    max_skipped: int = 100             # "skip": the run stops once more batches than this were skipped

    def __post_init__(self) -> None:
        for name in ("steps", "grad_accum", "log_every", "eval_batches", "dwa_window"):
            check(getattr(self, name) >= 1, f"train.{name}", "an integer >= 1", getattr(self, name))
        for name in ("eval_every", "ckpt_every", "keep_last", "num_workers"):
            check(getattr(self, name) >= 0, f"train.{name}", "an integer >= 0", getattr(self, name))
        check(self.latent_weight >= 0, "train.latent_weight", "a float >= 0", self.latent_weight)
        check(self.latent_unapplied_weight >= 0, "train.latent_unapplied_weight", "a float >= 0",
              self.latent_unapplied_weight)
        check(self.dwa_temperature > 0, "train.dwa_temperature", "a positive temperature", self.dwa_temperature)
        check(len(self.out_dir) > 0, "train.out_dir", "a directory path", self.out_dir)
        check(len(self.resume) > 0, "train.resume", "'auto', 'none' or a checkpoint directory", self.resume)
        check(self.nonfinite in NONFINITE, "train.nonfinite", f"one of {NONFINITE}", self.nonfinite)
        check(self.max_skipped >= 0, "train.max_skipped", "an integer >= 0", self.max_skipped)


@dataclass
class DeepSpeedSection:
    """DeepSpeed engine settings (the JSON config is built from the whole tree by ``icwm.train.engine``)."""

    zero_stage: int = 0                # ZeRO stage 0..3
    precision: str = "auto"            # "auto" (bf16 autocast on GPU, fp32 on CPU) | "fp32" | "bf16"

    def __post_init__(self) -> None:
        check(self.zero_stage in ZERO_STAGES, "deepspeed.zero_stage", f"one of {ZERO_STAGES}", self.zero_stage)
        check(self.precision in PRECISIONS, "deepspeed.precision", f"one of {PRECISIONS}", self.precision)

    def resolved_precision(self, on_gpu: bool) -> str:
        """``"bf16"`` or ``"fp32"``: ``auto`` means bf16 on a GPU and fp32 on a CPU."""
        if self.precision == "auto":
            return "bf16" if on_gpu else "fp32"
        return self.precision


def _default_data() -> EpisodeConfig:
    return EpisodeConfig(source="shards", shards_dir="data/shards/seen", k_min=0, k_max=8, batch_size=8)


@dataclass
class PretrainConfig:
    """Root of the pretraining config tree.

    ``data`` is the training episode stream (micro batch = ``data.batch_size`` episodes per rank);
    ``eval_data`` the held-out stream for periodic evaluation (``None``: ``data`` with another seed).
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig.flavour("debug"))
    data: EpisodeConfig = field(default_factory=_default_data)
    eval_data: Optional[EpisodeConfig] = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)

    def __post_init__(self) -> None:
        for name, d in (("data", self.data), ("eval_data", self.eval_data)):
            if d is None:
                continue
            check(d.k_max <= self.model.k_max, f"{name}.k_max", f"<= model.k_max ({self.model.k_max})", d.k_max)
            bad = [t for t, w in d.task_weights.items() if w > 0 and t not in self.model.tasks]
            check(not bad, f"{name}.task_weights", f"tasks among model.tasks {self.model.tasks}", bad)

    def global_batch(self, world_size: int) -> int:
        """Episodes per optimiser step: micro batch x grad accumulation x data-parallel ranks."""
        return self.data.batch_size * self.train.grad_accum * world_size

    def eval_stream(self) -> EpisodeConfig:
        """Held-out episode config: ``eval_data``, else ``data`` with a distinct seed, at k = ``data.k_max``."""
        if self.eval_data is not None:
            return self.eval_data
        return dataclasses.replace(self.data, seed=self.data.seed + 1_000_003, k_min=self.data.k_max, k_ramp=0)
