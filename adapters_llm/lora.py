"""Plain LoRA (Zheng & Dai: rank-r adapters on the attention query and value projections) through ``peft``, and
the helpers shared by every adapter: target lookup, dense views of Linear / GPT-2 ``Conv1D`` weights, merging.

GPT-2 fuses the query, key and value projections in one ``Conv1D`` (``attn.c_attn``): LoRA there adapts the fused
projection (peft's own GPT-2 default); LLaMA has separate ``q_proj`` / ``v_proj``.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

import torch
from torch import nn

from icwm.config import check

# default target-module suffixes per (role, architecture)
ATTENTION_TARGETS = {"gpt2": ["attn.c_attn"], "llama": ["self_attn.q_proj", "self_attn.v_proj"]}
FFN_TARGETS = {"gpt2": ["mlp.c_fc", "mlp.c_proj"], "llama": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
ALL_LINEAR = {"gpt2": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
              "llama": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}


def is_dense(module: nn.Module) -> bool:
    """True for ``nn.Linear`` and the transformers GPT-2 ``Conv1D`` (weight [in, out])."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def dense_weight(module: nn.Module) -> torch.Tensor:
    """Weight of a Linear / Conv1D as [out, in] (a view; Conv1D stores [in, out])."""
    return module.weight.T if type(module).__name__ == "Conv1D" else module.weight


def dense_features(module: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)`` of a Linear / Conv1D / NF4 storage."""
    if hasattr(module, "in_features"):
        return int(module.in_features), int(module.out_features)
    out_f, in_f = dense_weight(module).shape
    return int(in_f), int(out_f)


def find_targets(model: nn.Module, suffixes: Iterable[str]) -> list[str]:
    """Full names of the dense modules of ``model`` whose name ends with one of ``suffixes``.

    Raises:
        ValueError: when nothing matches (naming ``adapter.targets``).
    """
    suffixes = list(suffixes)
    names = [n for n, m in model.named_modules() if is_dense(m) and any(n == s or n.endswith("." + s) for s in suffixes)]
    check(len(names) > 0, "adapter.targets", f"module-name suffixes present in the backbone", suffixes)
    return names


def set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule ``name`` (dotted path) of ``root`` by ``module``."""
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def apply_lora(lm: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float, seed: int = 0) -> list[str]:
    """Inject peft LoRA adapters into ``lm`` in place (base layers kept as ``base_layer``).

    Args:
        lm: a transformers model. targets: module-name suffixes. rank, alpha, dropout: LoRA hyper-parameters.
        seed: peft initialises ``lora_A`` from the global RNG; it runs inside a forked RNG seeded with this.

    Returns:
        The full names of the adapted modules.
    """
    from peft import LoraConfig, inject_adapter_in_model
    names = find_targets(lm, targets)
    conv1d = any(type(lm.get_submodule(n)).__name__ == "Conv1D" for n in names)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=names,
                        fan_in_fan_out=conv1d, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, lm)
    return names


def set_merged(model: nn.Module, merged: bool) -> int:
    """Merge (or unmerge) every adapter layer of ``model`` that supports it; idempotent.

    Returns:
        The number of adapter layers visited.
    """
    n = 0
    for module in model.modules():
        if hasattr(module, "merged") and callable(getattr(module, "merge", None)) and hasattr(module, "base_layer"):
            if merged and not module.merged:
                module.merge()
            elif not merged and module.merged:
                module.unmerge()
            n += 1
    return n


def kaiming_a(shape: tuple[int, ...], fan_in: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """LoRA ``A`` initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (= kaiming_uniform(a=sqrt(5))), explicit RNG."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound


class LoRALinear(nn.Module):
    """LoRA around any dense ``base_layer`` (here the NF4 storage): ``y = base(x) + s * B A dropout(x)``.

    The delta is computed in fp32. ``merge()`` is refused for a quantised base (it would requantise).

    Args:
        base_layer: module mapping [..., in] -> [..., out] (frozen).
        rank, scaling, dropout: LoRA hyper-parameters (scaling = alpha / rank).
        A: optional initial [rank, in] (LoftQ); default kaiming-uniform from ``generator``.
        B: optional initial [out, rank] (LoftQ); default zeros.
    """

    def __init__(self, base_layer: nn.Module, rank: int, scaling: float, dropout: float = 0.0,
                 A: Optional[torch.Tensor] = None, B: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.base_layer = base_layer
        in_f, out_f = dense_features(base_layer)
        # contiguous copies (LoftQ's factors may be transposed views; DeepSpeed broadcasts parameters as bytes)
        self.lora_A = nn.Parameter(A.float().contiguous().clone() if A is not None
                                   else kaiming_a((rank, in_f), in_f, generator))
        self.lora_B = nn.Parameter(B.float().contiguous().clone() if B is not None else torch.zeros(out_f, rank))
        self.scaling = float(scaling)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 LoRA update: x [..., in] -> [..., out] float32."""
        return (self.dropout(x.float()) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., in] -> [..., out]."""
        out = self.base_layer(x)
        return out if self.merged else out + self.delta(x).to(out.dtype)

    def delta_weight(self) -> torch.Tensor:
        """fp32 update of the weight: s * B A, [out, in]."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def merge(self) -> None:
        """Fold the delta into a float base weight; idempotent; refused for quantised storage."""
        check(not getattr(self.base_layer, "quantized", False), "merge", "a float base layer (NF4 storage cannot "
              "absorb the delta without requantising)", type(self.base_layer).__name__)
        if not self.merged:
            with torch.no_grad():
                W = dense_weight(self.base_layer)
                W.copy_((W.float() + self.delta_weight()).to(W.dtype))
            self.merged = True

    def unmerge(self) -> None:
        """Subtract the merged delta again; idempotent."""
        if self.merged:
            with torch.no_grad():
                W = dense_weight(self.base_layer)
                W.copy_((W.float() - self.delta_weight()).to(W.dtype))
            self.merged = False
