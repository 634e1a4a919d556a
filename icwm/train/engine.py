"""DeepSpeed engine setup from the typed config: process group, JSON config, AdamW + warm-up/cosine LambdaLR.

The optimiser is a plain ``torch.optim.AdamW`` handed to DeepSpeed as a client optimiser (CPUs have no fused
Adam); the schedule is a ``LambdaLR`` that DeepSpeed steps once per optimiser step. With ZeRO stage 0 the
parameters hold full gradients, so global-norm clipping is done by ``torch.nn.utils.clip_grad_norm_`` just
before ``engine.step()`` (same result as DeepSpeed's clipping, a fraction of its per-parameter Python cost, and it
yields the gradient norm for logging); ZeRO >= 1 clips inside DeepSpeed, on the partitions. On one rank with
ZeRO 0 the (identity) gradient all-reduce is switched off. Precision ``bf16`` uses
DeepSpeed's ``torch_autocast`` (fp32 master weights, bf16 matmuls): the model's complex-valued input
processing stays in fp32, which DeepSpeed's whole-model bf16 cast would break.
"""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from icwm.train.config import DeepSpeedSection, OptimConfig, PretrainConfig

SHM_DIR = "/dev/shm"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed() -> tuple[int, int]:
    """Initialise the process group (idempotent); a plain ``python`` run becomes a 1-rank group.

    Without the launcher's environment (``RANK``/``WORLD_SIZE``...), a single-process group is set up on a free
    local port, so DeepSpeed never falls back to MPI discovery.

    Returns:
        (rank, world_size).
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator
    if "RANK" not in os.environ and "OMPI_COMM_WORLD_RANK" not in os.environ:
        for key, val in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_SIZE", "1"),
                         ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(_free_port()))):
            os.environ.setdefault(key, val)
    deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(), verbose=False)
    release_shm_buffer()
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def shm_buffer_path(rank: int) -> Path:
    """Name under /dev/shm of the all-reduce buffer DeepSpeed's CPU ``shm_comm`` op makes for ``rank``.

    The op (``deepspeed/ops/csrc/cpu/comm/shm.cpp``) creates one 66 MB segment per rank when every rank is local
    (``LOCAL_SIZE`` = world size) and never unlinks it, so each run would leave 66 MB of RAM per rank behind.
    """
    return Path(SHM_DIR) / (f"deepspeed_allreduce_buffer_{os.getuid()}_{os.environ.get('MASTER_ADDR', '')}_"
                            f"{os.environ.get('MASTER_PORT', '')}_{rank}")


def release_shm_buffer() -> None:
    """Unlink this rank's DeepSpeed shm buffer name once every rank has mapped its peers' buffers.

    Every rank opens all its peers' segments inside ``deepspeed.init_distributed``; after a barrier, removing the
    names keeps the mappings valid (POSIX shm semantics) and frees the memory when the processes end, killed ones
    included. Returns at once on a GPU accelerator; a no-op where the op made no buffer (ranks on several hosts).
    """
    if on_gpu():            # the op is DeepSpeed's CPU accelerator's; no collective before a GPU is bound
        return
    torch.distributed.barrier()
    shm_buffer_path(torch.distributed.get_rank()).unlink(missing_ok=True)


def on_gpu() -> bool:
    """Whether DeepSpeed's accelerator is a GPU-like device (anything but the CPU accelerator)."""
    from deepspeed.accelerator import get_accelerator
    return get_accelerator().device_name() != "cpu"


@dataclass(frozen=True)
class EngineSpec:
    """What the DeepSpeed engine is built from: the parts of a training config ``build_engine`` reads. Pretraining
    passes its ``PretrainConfig`` (``EngineSpec.of``); the LLM fine-tuning builds one per training stage."""

    micro_batch: int                 # samples per rank per micro step
    grad_accum: int                  # micro steps per optimiser step
    steps: int                       # optimiser steps (length of the warm-up + cosine schedule)
    optim: OptimConfig
    deepspeed: DeepSpeedSection

    @classmethod
    def of(cls, cfg: "PretrainConfig | EngineSpec") -> "EngineSpec":
        """The spec of a pretraining config (a spec is returned as it is)."""
        if isinstance(cfg, EngineSpec):
            return cfg
        return cls(cfg.data.batch_size, cfg.train.grad_accum, cfg.train.steps, cfg.optim, cfg.deepspeed)


def ds_config(cfg: "PretrainConfig | EngineSpec", precision: str) -> dict:
    """DeepSpeed JSON config built from the typed tree (micro batch, accumulation, clipping, ZeRO, precision).

    Args:
        cfg: the pretraining config or an ``EngineSpec``.
        precision: resolved precision, ``"fp32"`` or ``"bf16"``.
    Returns:
        The dict handed to ``deepspeed.initialize(config=...)``.
    """
    spec = EngineSpec.of(cfg)
    out = {
        "train_micro_batch_size_per_gpu": spec.micro_batch,
        "gradient_accumulation_steps": spec.grad_accum,
        "gradient_clipping": 0.0 if own_clip(spec) else spec.optim.clip,
        "zero_optimization": {"stage": spec.deepspeed.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10 ** 12,
        "wall_clock_breakdown": False,
    }
    if precision == "bf16":
        out["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
    return out


def own_clip(cfg: "PretrainConfig | EngineSpec") -> bool:
    """Whether clipping happens outside DeepSpeed (ZeRO stage 0: parameters hold the full gradients)."""
    return cfg.deepspeed.zero_stage == 0


def optimizer_step(engine, clip: float, clip_here: bool) -> Optional[float]:
    """``engine.step()``, clipping first when ``clip_here`` and this micro step closes an accumulation.

    Args:
        engine: the DeepSpeed engine, after ``engine.backward``.
        clip: max global gradient norm (0 = no clipping; the norm is still measured).
        clip_here: clip with torch (ZeRO stage 0) rather than inside DeepSpeed.
    Returns:
        The global gradient norm before clipping at an accumulation boundary, else ``None``. A non-finite norm
        (inf / NaN) means the step was not applied: the parameters are unchanged.
    """
    if not engine.is_gradient_accumulation_boundary():
        engine.step()
        return None
    norm = None
    if clip_here:
        norm = float(torch.nn.utils.clip_grad_norm_(engine.module.parameters(), clip if clip > 0 else math.inf))
        if not math.isfinite(norm):
            freeze_update(engine)
    engine.step()                   # ZeRO >= 1: DeepSpeed skips the update itself on a non-finite gradient
    if norm is None:
        norm = engine.get_global_grad_norm()
    return None if norm is None else float(norm)


def freeze_update(engine) -> None:
    """Make the coming ``engine.step()`` leave every parameter unchanged (ZeRO stage 0, torch AdamW).

    Gradients are zeroed and the learning rate set to 0 for this step (AdamW's update and its decoupled weight decay
    both scale with it); the ``LambdaLR`` step that follows recomputes the rate from its base, so later steps are
    untouched. Adam's moments still decay by one step.
    """
    for p in engine.module.parameters():
        if p.grad is not None:
            p.grad.zero_()
    for group in engine.optimizer.param_groups:
        group["lr"] = 0.0


def lr_lambda(optim: OptimConfig, total_steps: int) -> Callable[[int], float]:
    """LR multiplier per optimiser step ``s``: linear warm-up ``(s+1)/warmup``, then cosine to ``min_lr_ratio``.

    Args:
        optim: optimiser config (``warmup_steps``, ``min_lr_ratio``).
        total_steps: optimiser steps of the whole run.
    Returns:
        ``f(step) -> multiplier`` for ``torch.optim.lr_scheduler.LambdaLR``.
    """
    warm, floor = optim.warmup_steps, optim.min_lr_ratio

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        span = max(total_steps - warm, 1)
        t = min((step - warm) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    return f


PROBE_PREFIXES = ("probes.", "fit_probes.")     # the latent probe's read-outs (``ICWM.probes``, ``ICWM.fit_probes``)
ICR_MARK = ".icr."                              # the in-context ridges' scalars (``InContextRidge``)


def param_groups(model: nn.Module, weight_decay: float, probe_decay: bool = True,
                 icr_lr: Optional[float] = None) -> list[dict]:
    """AdamW groups: weight decay on parameters with >= 2 dims (matrices, embeddings), none on biases/gains, nor on
    the latent probe's matrices unless ``probe_decay``; with ``icr_lr`` the in-context ridges' scalars in a group of
    their own at that learning rate."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    icr = [icr_lr is not None and ICR_MARK in n for n, _ in params]
    decayed = [p.dim() >= 2 and (probe_decay or not n.startswith(PROBE_PREFIXES)) for n, p in params]
    pick = lambda keep: [p for (_, p), d, i in zip(params, decayed, icr) if keep(d, i)]  # noqa: E731
    groups = [{"params": pick(lambda d, i: d and not i), "weight_decay": weight_decay},
              {"params": pick(lambda d, i: not d and not i), "weight_decay": 0.0}]
    if any(icr):
        groups.append({"params": pick(lambda d, i: i), "weight_decay": 0.0, "lr": icr_lr})
    return groups


def build_optimizer(model: nn.Module, cfg: "PretrainConfig | EngineSpec"
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Torch AdamW (non-fused, foreach) and its warm-up + cosine ``LambdaLR``."""
    spec = EngineSpec.of(cfg)
    o = spec.optim
    icr_lr = o.lr * o.icr_lr_mult if o.icr_lr_mult != 1.0 else None      # 1: no group of its own (as before)
    groups = param_groups(model, o.weight_decay, o.probe_decay, icr_lr)
    opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(o, spec.steps))


def build_engine(model: nn.Module, cfg: "PretrainConfig | EngineSpec"):
    """``deepspeed.initialize`` with the client AdamW and LambdaLR; the process group must exist.

    Args:
        model: the freshly built model (CPU, fp32); DeepSpeed moves it to the rank's device.
        cfg: the pretraining config or an ``EngineSpec``.
    Returns:
        (engine, precision) with ``precision`` the resolved ``"fp32"`` / ``"bf16"``.
    """
    import deepspeed
    cfg = EngineSpec.of(cfg)
    precision = cfg.deepspeed.resolved_precision(on_gpu())
    opt, sched = build_optimizer(model, cfg)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                           config=ds_config(cfg, precision))
    if own_clip(cfg) and torch.distributed.get_world_size() == 1:
        engine.enable_backward_allreduce = False     # averaging over one rank is the identity
    return engine, precision


LAUNCHER_MARKS = ("deepspeed", "torch.distributed.run", "torchrun")   # command lines of process launchers


class LauncherGone(SystemExit):
    """Raised on a rank whose launcher died: the rank stops at once (exit status 1, no traceback, no checkpoint)."""


def _proc_ppid(pid: int) -> Optional[int]:
    """Parent pid of ``pid`` from ``/proc/<pid>/stat`` (``None`` when the process is gone or /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])          # fields after "(comm)": state, ppid, ...


def _is_launcher(pid: int) -> bool:
    """Whether ``pid``'s command line names a launcher (``deepspeed`` runner / ``launch``, ``torchrun``)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return any(mark in cmd for mark in LAUNCHER_MARKS)


class LauncherWatch:
    """Notices that a launcher process above this rank died (Linux ``/proc``; elsewhere it never fires).

    Killing the ``deepspeed`` runner or its ``launch`` child with SIGKILL leaves the ranks running, re-parented.
    At start the watch records the chain of launcher ancestors (the parent, its parent, ... while their command
    lines name a launcher); ``gone()`` then checks that each link still has the same parent. A plain ``python``
    run has no launcher parent and is never watched (closing its shell must not stop it).
    """

    def __init__(self, max_depth: int = 3) -> None:
        self.links: list[tuple[int, int]] = []              # (child pid, its launcher parent pid at start)
        child = os.getpid()
        parent = _proc_ppid(child)
        while parent and len(self.links) < max_depth and _is_launcher(parent):
            self.links.append((child, parent))
            child, parent = parent, _proc_ppid(parent)

    def gone(self) -> Optional[int]:
        """Pid of a watched launcher that died since the start, else ``None``."""
        for child, parent in self.links:
            now = os.getppid() if child == os.getpid() else _proc_ppid(child)
            if now != parent:
                return parent
        return None
