"""Assembly: prompt + task encoder + (adapted) backbone + task decoder, one per task; adapter-only checkpoints.

``build_model(cfg, shapes)`` resolves ``adapter.peft`` in :func:`apply_method` (the one place it is resolved);
``shapes`` gives, per task, the per-sample shape of every sample key (``{"cp": {"h_hist": (16, 8, 4), ...}}``),
e.g. from :func:`sample_shapes` of one generated group. The task is an explicit forward argument.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from adapters_llm import quant
from adapters_llm.backbones import Backbone, build_backbone
from adapters_llm.config import AdapterConfig, FinetuneConfig
from adapters_llm.decoders import build_decoder
from adapters_llm.encoders import build_encoder, n_tokens
from adapters_llm.lora import (ALL_LINEAR, ATTENTION_TARGETS, FFN_TARGETS, LoRALinear, apply_lora, dense_weight,
                               find_targets, set_module)
from adapters_llm.moe_lora import MoELoRALinear, task_context
from adapters_llm.prompts import prompt_ids
from icwm import tasks as task_registry
from icwm.config import check, load_config, to_yaml
from icwm.tasks.common import first_guess

ADAPTER_KEYS = ("lora_A", "lora_B", ".gate.")      # backbone parameters that train (name filter)
GROUPS = ("encoders", "decoder_adapters", "heads", "adapters")
WEIGHTS, CONFIG, SHAPES = "adapter.safetensors", "config.yaml", "shapes.json"


def sample_shapes(sample: dict[str, torch.Tensor], lead: int = 2) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of a task's tensors with ``lead`` leading dims (``[group, sample]`` by default)."""
    return {k: tuple(v.shape[lead:]) for k, v in sample.items() if torch.is_tensor(v)}


def apply_method(backbone: Backbone, cfg: AdapterConfig, seed: int = 0) -> dict[str, dict[str, list[float] | float]]:
    """Insert the adapters of ``cfg.peft`` into ``backbone.lm`` in place and freeze its base weights.

    Returns:
        Per adapted module (NF4 methods): ``{"loftq": [errors per iteration], "naive": ||W - NF4(W)||_F}``.
    """
    lm, arch, gen = backbone.lm, backbone.arch, torch.Generator().manual_seed(seed)
    report: dict[str, dict] = {}
    if cfg.peft == "lora":
        apply_lora(lm, cfg.targets or ATTENTION_TARGETS[arch], cfg.rank, cfg.alpha, cfg.dropout, seed)
    elif cfg.peft == "moe_lora":
        for name in find_targets(lm, cfg.targets or FFN_TARGETS[arch]):
            set_module(lm, name, MoELoRALinear(lm.get_submodule(name), cfg.n_experts, cfg.rank, cfg.scaling,
                                               cfg.dropout, cfg.task_dim, cfg.gate, gen))
    elif cfg.peft in ("nf4_loftq", "nf4_naive"):
        adapted = set(find_targets(lm, cfg.targets or ATTENTION_TARGETS[arch]))
        for name in find_targets(lm, ALL_LINEAR[arch]):
            base = lm.get_submodule(name)
            set_module(lm, name, _nf4_module(base, name in adapted, cfg, gen, report, name))
    for name, p in backbone.named_parameters():
        p.requires_grad_(any(k in name for k in ADAPTER_KEYS))
    return report


def _nf4_module(base: nn.Module, adapted: bool, cfg: AdapterConfig, gen: torch.Generator, report: dict,
                name: str) -> nn.Module:
    """NF4 storage of ``base``, wrapped in LoRA (LoftQ or standard init) when ``adapted``."""
    if not adapted:
        return quant.NF4Linear.from_dense(base, cfg.blocksize)
    W = dense_weight(base).detach().float()
    naive = float(torch.linalg.matrix_norm(W - quant.nf4_roundtrip(W, cfg.blocksize)))
    if cfg.peft == "nf4_naive":
        report[name] = {"naive": naive}
        return LoRALinear(quant.NF4Linear.from_dense(base, cfg.blocksize), cfg.rank, cfg.scaling, cfg.dropout,
                          generator=gen)
    r = quant.loftq(W, cfg.rank, cfg.loftq_iters, cfg.scaling, cfg.blocksize)
    report[name] = {"loftq": r.errors, "naive": naive}
    storage = quant.NF4Linear.from_dense(base, cfg.blocksize, weight=r.residual)
    return LoRALinear(storage, cfg.rank, cfg.scaling, cfg.dropout, A=r.A, B=r.B)


class AdaptedLLM(nn.Module):
    """Per-task encoders and decoders around an optional adapted backbone.

    Args:
        cfg: the full config. shapes: task -> key -> per-sample shape. backbone: None for ``no_llm``.
    """

    def __init__(self, cfg: FinetuneConfig, shapes: dict[str, dict[str, tuple[int, ...]]],
                 backbone: Optional[Backbone]) -> None:
        super().__init__()
        m = cfg.model
        for t in m.tasks:
            check(t in shapes, "shapes", f"per-sample shapes for every task in model.tasks ({m.tasks})", sorted(shapes))
        self.tasks, self.use_prompt = list(m.tasks), bool(m.prompt and backbone is not None)
        self.residual, self.shapes = list(m.residual), shapes
        d = backbone.hidden_size if backbone is not None else m.width
        self.backbone = backbone
        self.encoders = nn.ModuleDict({t: build_encoder(t, m.family, shapes[t], m.width, d, m.enc_blocks,
                                                        m.adapter_blocks, m.patch) for t in m.tasks})
        self.decoders = nn.ModuleDict({t: build_decoder(t, m.family, shapes[t], d, m.width, m.adapter_blocks,
                                                        n_tokens(t, m.family, shapes[t], m.patch)) for t in m.tasks})
        for t in self.residual:
            _zero_last_layer(self.decoders[t])
        moe = backbone is not None and any(isinstance(x, MoELoRALinear) for x in backbone.modules())
        self.task_embedding = nn.Embedding(len(m.tasks), cfg.adapter.task_dim) if moe else None
        for t in m.tasks:
            ids = prompt_ids(backbone.tokenize, t) if self.use_prompt else torch.zeros(0, dtype=torch.long)
            self.register_buffer(f"prompt_{t}", ids, persistent=False)

    def forward(self, x: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
        """Predict ``task`` for a batch.

        Args:
            x: the task's input tensors, each [batch, ...] (X_KEYS of docs/contracts.md).
            task: task id (one of ``self.tasks``).

        Returns:
            Predictions keyed by the task's Y_KEYS, each [batch, ...].
        """
        check(task in self.encoders, "task", f"one of {self.tasks}", task)
        tokens, ctx = self.encoders[task](x)                                      # [seq_batch, seq, d]
        hidden = tokens if self.backbone is None else self._through_llm(tokens, task)
        pred = self.decoders[task](hidden, ctx)
        if task not in self.residual:
            return pred
        base = first_guess(task_registry.get(task), x, self.shapes[task])
        return {k: v + base[k].to(v.dtype) if k in base else v for k, v in pred.items()}

    def _through_llm(self, tokens: torch.Tensor, task: str) -> torch.Tensor:
        """Prepend the prompt, run the backbone (with the task embedding for MoE-LoRA), drop prompt positions."""
        b = tokens.shape[0]
        ids = getattr(self, f"prompt_{task}")
        if ids.numel():
            prompt = self.backbone.embed(ids[None]).to(tokens.dtype).expand(b, -1, -1)   # [b, prompt, d]
            tokens = torch.cat([prompt, tokens], 1)
        if self.task_embedding is None:
            hidden = self.backbone(tokens)
        else:
            idx = torch.full((b,), self.tasks.index(task), dtype=torch.long, device=tokens.device)
            with task_context(self.backbone, self.task_embedding(idx)):
                hidden = self.backbone(tokens)
        return hidden[:, ids.numel():]

    def group_of(self, name: str) -> str:
        """Training group of a parameter name: one of GROUPS, or ``"backbone"`` (never trained)."""
        if name.startswith("encoders."):
            return "encoders"
        if name.startswith("decoders."):
            return "decoder_adapters" if ".adapter." in name else "heads"
        if name.startswith("task_embedding.") or any(k in name for k in ADAPTER_KEYS):
            return "adapters"
        return "backbone"

    def set_trainable(self, groups: tuple[str, ...] = GROUPS) -> int:
        """Train exactly the parameters of ``groups`` (name filter); returns the trainable parameter count."""
        for g in groups:
            check(g in GROUPS, "groups", f"names from {GROUPS}", g)
        for name, p in self.named_parameters():
            p.requires_grad_(self.group_of(name) in groups)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight that fine-tuning may change (all groups), detached and contiguous."""
        return {n: p.detach().contiguous() for n, p in self.named_parameters() if self.group_of(n) != "backbone"}


def _zero_last_layer(decoder: nn.Module) -> None:
    """Zero the weight and bias of the last Linear / Conv1d of ``decoder`` (a residual head starts at zero)."""
    last = [m for m in decoder.modules() if isinstance(m, (nn.Linear, nn.Conv1d))][-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; NF4-stored weights count as their logical out x in entries."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    nf4 = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, quant.NF4Linear))
    return trainable, sum(p.numel() for p in model.parameters()) + nf4


def build_model(cfg: FinetuneConfig, shapes: dict[str, dict[str, tuple[int, ...]]]) -> tuple[AdaptedLLM, dict]:
    """Build the backbone of ``cfg.backbone`` (none for ``no_llm``), apply ``cfg.adapter.peft``, add the tasks.

    Returns:
        (model, report) with ``report`` from :func:`apply_method` (LoftQ / naive errors for NF4 methods).
    """
    backbone, report = None, {}
    if cfg.adapter.peft != "no_llm":
        backbone = build_backbone(cfg.backbone)
        report = apply_method(backbone, cfg.adapter, cfg.train.seed)
    with torch.random.fork_rng(devices=[]):     # torch.nn layer initialisers use the global RNG: fork and seed
        torch.manual_seed(cfg.train.seed)
        model = AdaptedLLM(cfg, shapes, backbone)
    model.set_trainable()
    return model, report


def save_adapter(model: AdaptedLLM, cfg: FinetuneConfig, shapes: dict, out_dir: str | Path) -> Path:
    """Write ``adapter.safetensors`` (trainable weights only), ``config.yaml`` and ``shapes.json`` atomically."""
    from safetensors.torch import save_file
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu() for k, v in model.adapter_state_dict().items()}, str(tmp / WEIGHTS))
    (tmp / CONFIG).write_text(to_yaml(cfg))
    (tmp / SHAPES).write_text(json.dumps({t: {k: list(s) for k, s in v.items()} for t, v in shapes.items()}))
    if out.exists():
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    os.replace(tmp, out)
    return out


def load_adapter(model: AdaptedLLM, ckpt_dir: str | Path) -> None:
    """Load ``adapter.safetensors`` into ``model``; every stored tensor must exist with the same shape."""
    from safetensors.torch import load_file
    state = load_file(str(Path(ckpt_dir) / WEIGHTS))
    own = model.adapter_state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    check(not bad, "train.init_from", "a checkpoint of the same model layout", bad[:3])
    model.load_state_dict(state, strict=False)


def from_checkpoint(ckpt_dir: str | Path, overrides: tuple[str, ...] = ()) -> AdaptedLLM:
    """Rebuild a fine-tuned model from its checkpoint directory (config + shapes + adapter weights)."""
    root = Path(ckpt_dir)
    cfg = load_config(FinetuneConfig, root / CONFIG, overrides)
    shapes = {t: {k: tuple(s) for k, s in v.items()} for t, v in json.loads((root / SHAPES).read_text()).items()}
    model, _ = build_model(cfg, shapes)
    load_adapter(model, root)
    return model
