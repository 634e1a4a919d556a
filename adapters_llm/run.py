"""End-to-end fine-tuning run: generate the task pools, build the model, train, save adapter + metrics.

Output layout (``train.out_dir``)::

    tb/                       TensorBoard events (rank 0)
    step_00000100/            intermediate checkpoints (``train.ckpt_every``)
    final/                    adapter.safetensors (trainable weights only), config.yaml, shapes.json
    metrics.json              held-out metrics per task (``data.eval_groups`` groups per task and system)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from adapters_llm.config import FinetuneConfig
from adapters_llm.model import build_model, load_adapter, sample_shapes, save_adapter
from adapters_llm.train import Pool, Trainer, evaluate, flatten_groups
from icwm import tasks as task_registry
from icwm.config import check
from icwm.data.config import resolve_systems
from icwm.data.shards import stable_seed


def generate_pools(cfg: FinetuneConfig) -> tuple[dict[str, Pool], dict[str, Pool], dict[str, dict]]:
    """Training and held-out pools per task from the task modules, and per-sample shapes per task.

    Every (task, system) pair gets its own generator seeded by ``(data.seed, task, system name)``.
    """
    systems = resolve_systems(cfg.data.families, cfg.data.systems, "data.systems")
    n_train, n_eval = cfg.data.groups, cfg.data.eval_groups
    train, held, shapes = {}, {}, {}
    for task in cfg.model.tasks:
        mod, parts_t, parts_e = task_registry.get(task), [], []
        for sys_cfg in systems:
            rng = torch.Generator().manual_seed(stable_seed(cfg.data.seed, task, sys_cfg.name))
            out = mod.generate(sys_cfg, n_train + n_eval, cfg.data.samples_per_group, rng)
            shp = sample_shapes(out)
            check(shapes.setdefault(task, shp) == shp, "data.systems", f"systems with equal {task} tensor shapes",
                  sys_cfg.name)
            parts_t.append(flatten_groups({k: v[:n_train] for k, v in out.items() if torch.is_tensor(v)}))
            parts_e.append(flatten_groups({k: v[n_train:] for k, v in out.items() if torch.is_tensor(v)}))
        train[task] = {k: torch.cat([p[k] for p in parts_t]) for k in parts_t[0]}
        if n_eval:
            held[task] = {k: torch.cat([p[k] for p in parts_e]) for k in parts_e[0]}
    return train, held, shapes


def finetune(cfg: FinetuneConfig) -> dict:
    """Run one fine-tuning job; returns a summary (losses, metrics, parameter counts, checkpoint path)."""
    from icwm.train.logging import TBLogger
    rank = int(os.environ.get("RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu")
    train_pools, held, shapes = generate_pools(cfg)
    model, report = build_model(cfg, shapes)
    if cfg.train.init_from:
        load_adapter(model, cfg.train.init_from)
    model.to(device)
    out = Path(cfg.train.out_dir)
    mods = {t: task_registry.get(t) for t in cfg.model.tasks}
    supervised = {t: m.supervised_loss for t, m in mods.items() if hasattr(m, "supervised_loss")}
    logger = TBLogger(out / "tb", enabled=rank == 0)

    def save(step: int, final: bool) -> None:
        if rank == 0:
            name = "final" if final else f"step_{step:08d}"
            save_adapter(model, cfg, shapes, out / name)

    trainer = Trainer(model, cfg.train, train_pools, {t: m.loss for t, m in mods.items()}, supervised, logger, save)
    history = trainer.fit()
    logger.close()
    metrics = evaluate(model, held, {t: m.metric for t, m in mods.items()}) if held else {}
    summary = {"final_loss": history.loss[-1], "first_loss": history.loss[0], "metrics": metrics,
               "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
               "total": sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()),
               "checkpoint": str(out / "final"), "loftq": report}
    if rank == 0:
        (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary
