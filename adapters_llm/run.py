"""End-to-end fine-tuning run: generate the task pools, build the model, train, save adapter + metrics.

Output layout (``train.out_dir``)::

    tb/                       TensorBoard events (rank 0)
    step_00000100/            intermediate checkpoints (``train.ckpt_every``)
    final/                    adapter.safetensors (trainable weights only), config.yaml, shapes.json
    metrics.json              summary: mean task loss on the (fixed) training pools before / after training (their
                              first ``SUMMARY_SAMPLES`` samples per task and system),
                              held-out metrics per task (``data.eval_groups`` groups per task and system) and
                              per system, parameter counts, step time, LoftQ report, world size, global batch
    curve.json                validation curve (``train.eval_every`` > 0): train / validation loss per evaluation,
                              best step, why training stopped (``adapters_llm.early_stop``)

Training runs on the DeepSpeed engine (``adapters_llm.distributed``): a plain ``python`` run is a 1-rank group,
the ``deepspeed`` launcher gives N ranks that share each global batch.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from adapters_llm.config import FinetuneConfig
from adapters_llm.model import AdaptedLLM, build_model, load_adapter, param_counts, sample_shapes, save_adapter
from adapters_llm.train import Pool, Trainer, evaluate, flatten_groups
from icwm import tasks as task_registry
from icwm.config import check
from icwm.data.config import resolve_systems
from icwm.data.shards import stable_seed

SUMMARY_SAMPLES = 256      # training samples per pool in the summary's before / after loss (a forward over all of
                           # them would cost as much as hundreds of training steps on a large pool)


def select_systems(cfg: FinetuneConfig, task: str) -> list:
    """Systems of ``task``: ``data.task_families[task]`` (else ``data.families``) + ``data.systems``, restricted to
    ``data.task_systems[task]`` (else ``data.system_names``) when given; unknown names raise ``ValueError``."""
    d = cfg.data
    systems = resolve_systems(d.task_families.get(task, d.families), d.systems, "data.systems")
    wanted = d.task_systems.get(task, d.system_names)
    if wanted:
        field_name = f"data.task_systems.{task}" if task in d.task_systems else "data.system_names"
        known = [s.name for s in systems]
        missing = [n for n in wanted if n not in known]
        check(not missing, field_name, f"names among the systems of task {task} {known}", missing)
        systems = [s for s in systems if s.name in wanted]
    return systems


def generate_pools(cfg: FinetuneConfig, with_val: bool = False) -> tuple:
    """Training, held-out (and validation) pools per task and system from the task modules.

    Every (task, system) pair gets its own generator seeded by ``(data.seed, task, system name)``; its groups are
    split in this order: training, held-out (``data.eval_groups``), validation (``data.val_groups``, generated after
    the others so that adding them leaves the training and held-out samples unchanged). In few-shot mode
    (``train.few_shot = N``) only ``ceil(N / samples_per_group)`` training groups are generated per pair.

    Returns:
        (train, held, shapes, names[, val]): task -> one pool ``[N, ...]`` per system (systems may differ in shapes),
        held-out pools alike (empty when ``data.eval_groups = 0``), per-sample shapes of the first system per task
        (the model is built from them), task -> system names in pool order, and with ``with_val`` the validation
        pools (empty when ``data.val_groups = 0``).
    """
    few = cfg.train.few_shot
    n_train = -(-few // cfg.data.samples_per_group) if few else cfg.data.groups
    n_eval, n_val = cfg.data.eval_groups, cfg.data.val_groups if with_val else 0
    train: dict[str, list[Pool]] = {}
    held: dict[str, list[Pool]] = {}
    val: dict[str, list[Pool]] = {}
    shapes: dict[str, dict] = {}
    names: dict[str, list[str]] = {}
    for task in cfg.model.tasks:
        mod = task_registry.get(task)
        for sys_cfg in select_systems(cfg, task):
            rng = torch.Generator().manual_seed(stable_seed(cfg.data.seed, task, sys_cfg.name))
            out = {k: v for k, v in mod.generate(sys_cfg, n_train + n_eval, cfg.data.samples_per_group, rng).items()
                   if torch.is_tensor(v)}
            shapes.setdefault(task, sample_shapes(out))
            names.setdefault(task, []).append(sys_cfg.name)
            train.setdefault(task, []).append(flatten_groups({k: v[:n_train] for k, v in out.items()}))
            if n_eval:
                held.setdefault(task, []).append(flatten_groups({k: v[n_train:] for k, v in out.items()}))
            if n_val:
                extra = mod.generate(sys_cfg, n_val, cfg.data.samples_per_group, rng)
                val.setdefault(task, []).append(flatten_groups(extra))
    return (train, held, shapes, names, val) if with_val else (train, held, shapes, names)


@torch.no_grad()
def check_compatible(model: AdaptedLLM, pools: dict[str, list[Pool]], names: dict[str, list[str]],
                     losses: dict) -> None:
    """Dry-run one sample of every (task, system) pool through the model and its loss.

    Systems whose shapes differ from the first one's only where the task's encoder is size-agnostic (e.g. the
    number of users for pre_sr / pre_mm) pass; others raise ``ValueError`` naming ``data.systems``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for task, ps in pools.items():
            for name, pool in zip(names[task], ps):
                one = {k: v[:1].to(device) for k, v in pool.items()}
                try:
                    losses[task](model(one, task), one)
                except RuntimeError as err:
                    raise ValueError(f"data.systems: expected systems whose {task} tensor shapes fit the model "
                                     f"built from {names[task][0]!r} ({sample_shapes(pool, 1)}), got {name!r}: "
                                     f"{err}") from err
    finally:
        model.train(was_training)


def finetune(cfg: FinetuneConfig) -> dict:
    """Run one fine-tuning job; returns a summary (losses, metrics, parameter counts, checkpoint path)."""
    return run_finetune(cfg)[1]


def run_finetune(cfg: FinetuneConfig) -> tuple[AdaptedLLM, dict]:
    """Run one fine-tuning job; returns the trained model (eval mode) and the summary written to metrics.json."""
    from icwm.train.engine import init_distributed
    from icwm.train.logging import TBLogger
    rank, n_ranks = init_distributed()          # a 1-rank group without the launcher; idempotent
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    train_pools, held, shapes, names, val = generate_pools(cfg, with_val=True)
    val = val if cfg.train.eval_every > 0 else {}
    model, report = build_model(cfg, shapes)
    if cfg.train.init_from:
        load_adapter(model, cfg.train.init_from)
    model.to(device)
    out = Path(cfg.train.out_dir)
    mods = {t: task_registry.get(t) for t in cfg.model.tasks}
    losses = {t: m.loss for t, m in mods.items()}
    check_compatible(model, train_pools, names, losses)
    supervised = {t: m.supervised_loss for t, m in mods.items() if hasattr(m, "supervised_loss")}
    logger = TBLogger(out / "tb", enabled=rank == 0)

    def save(step: int, final: bool) -> None:
        if rank == 0:
            name = "final" if final else f"step_{step:08d}"
            save_adapter(model, cfg, shapes, out / name)

    trainer = Trainer(model, cfg.train, train_pools, losses, supervised, logger, save, val=val,
                      deepspeed=cfg.deepspeed)
    summary_pools = {t: [{k: v[:SUMMARY_SAMPLES] for k, v in p.items()} for p in ps]
                     for t, ps in trainer.pools.items()}
    start = evaluate(model, summary_pools, losses)
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    logger.close()
    end = evaluate(model, summary_pools, losses)
    metric_fns = {t: m.metric for t, m in mods.items()}
    metrics = evaluate(model, held, metric_fns) if held else {}
    by_system = {t: {name: evaluate(model, {t: [ps[i]]}, metric_fns)[t] for i, name in enumerate(names[t])}
                 for t, ps in held.items()}
    trainable, total = param_counts(model)
    summary = {"final_loss": history.loss[-1], "first_loss": history.loss[0],
               "train_loss_before": {t: v["loss"] for t, v in start.items()},
               "train_loss_after": {t: v["loss"] for t, v in end.items()},
               "metrics": metrics, "metrics_by_system": by_system, "systems": names,
               "train_samples": {t: sum(int(next(iter(p.values())).shape[0]) for p in ps)
                                 for t, ps in trainer.pools.items()},
               "trainable": trainable, "total": total, "step_s": seconds / max(1, len(history.loss)),
               "checkpoint": str(out / "final"), "loftq": report, "world_size": n_ranks,
               "global_batch": cfg.train.batch_size, "loss_history": history.loss,
               "curve": trainer.curve.to_dict() if trainer.curve is not None else None}
    if rank == 0:
        (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
        if trainer.curve is not None:
            (out / "curve.json").write_text(json.dumps(summary["curve"], indent=1))
    return model.eval(), summary
