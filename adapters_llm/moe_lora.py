"""MoE-LoRA (LLM4WM): a mixture of LoRA experts on a frozen dense layer, gated by a task embedding.

``y = base(x) + s * sum_e g_e(task) B_e A_e dropout(x)``, with ``g(task) = softmax(W_g t + b_g)`` from the task
embedding ``t`` through one linear layer (dense weighted sum), or its top-1 variant (only the arg-max expert, scaled
by its probability so the gate still trains). The task embedding is an explicit forward argument; inside a
transformers model it is handed to every MoE layer by :func:`task_context` (forward pre-hooks adding the keyword,
the mechanism peft uses for per-sample adapters), so no library model file is patched.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn

from adapters_llm.lora import dense_features, dense_weight, kaiming_a
from icwm.config import check


class MoELoRALinear(nn.Module):
    """Mixture of ``n_experts`` rank-``rank`` LoRA experts around ``base_layer``.

    Args:
        base_layer: frozen Linear / Conv1D.
        n_experts, rank: expert count and rank (LLM4WM: 8 x 8).
        scaling: alpha / rank (LLM4WM alpha = 2 r, i.e. 2).
        dropout: dropout on the expert input (LLM4WM 0.1).
        task_dim: width of the task embedding fed to the gate.
        gate: ``"dense"`` or ``"top1"``.
        generator: RNG for the A and gate initialisation (B starts at zero).
    """

    def __init__(self, base_layer: nn.Module, n_experts: int, rank: int, scaling: float, dropout: float,
                 task_dim: int, gate: str = "dense", generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        check(gate in ("dense", "top1"), "adapter.gate", "'dense' or 'top1'", gate)
        self.base_layer = base_layer
        in_f, out_f = dense_features(base_layer)
        self.lora_A = nn.Parameter(kaiming_a((n_experts, rank, in_f), in_f, generator))
        self.lora_B = nn.Parameter(torch.zeros(n_experts, out_f, rank))
        self.gate = nn.Linear(task_dim, n_experts)
        with torch.no_grad():
            self.gate.weight.copy_(kaiming_a((n_experts, task_dim), task_dim, generator))
            self.gate.bias.zero_()
        self.scaling, self.gate_kind = float(scaling), gate
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.register_buffer("merged_task", torch.zeros(0), persistent=False)

    def gate_weights(self, task_emb: torch.Tensor) -> torch.Tensor:
        """Expert weights: task_emb [batch, task_dim] -> [batch, expert] (rows sum to 1 for dense)."""
        p = torch.softmax(self.gate(task_emb.float()), dim=-1)
        if self.gate_kind == "top1":
            p = p * nn.functional.one_hot(p.argmax(-1), p.shape[-1]).to(p.dtype)
        return p

    def delta(self, x: torch.Tensor, task_emb: torch.Tensor) -> torch.Tensor:
        """fp32 mixture update: x [batch, ..., in], task_emb [batch, task_dim] -> [batch, ..., out] float32."""
        w = self.gate_weights(task_emb)                                    # [batch, expert]
        z = torch.einsum("b...i,eri->b...er", self.dropout(x.float()), self.lora_A)
        z = z * w.reshape(w.shape[:1] + (1,) * (x.dim() - 2) + w.shape[1:] + (1,))
        return torch.einsum("b...er,eor->b...o", z, self.lora_B) * self.scaling

    def forward(self, x: torch.Tensor, task_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [batch, ..., in], task_emb: [batch, task_dim] (required) -> [batch, ..., out]."""
        check(task_emb is not None, "task_emb", "a task embedding [batch, task_dim] (use task_context)", None)
        out = self.base_layer(x)
        if self.merged:
            check(bool((task_emb == self.merged_task).all()), "task_emb", "the task the layer was merged for",
                  "another task")
            return out
        return out + self.delta(x, task_emb).to(out.dtype)

    def delta_weight(self, task_emb: torch.Tensor) -> torch.Tensor:
        """fp32 weight update of one task: task_emb [task_dim] -> s * sum_e g_e B_e A_e, [out, in]."""
        w = self.gate_weights(task_emb[None])[0]                           # [expert]
        return torch.einsum("e,eor,eri->oi", w, self.lora_B, self.lora_A) * self.scaling

    def merge(self, task_emb: Optional[torch.Tensor] = None) -> None:
        """Fold one task's mixture into the base weight (idempotent for the same task)."""
        check(task_emb is not None, "task_emb", "the task embedding [task_dim] to merge for", None)
        if self.merged:
            check(bool(torch.equal(task_emb, self.merged_task)), "task_emb", "the merged task (unmerge first)",
                  "another task")
            return
        with torch.no_grad():
            W = dense_weight(self.base_layer)
            W.copy_((W.float() + self.delta_weight(task_emb)).to(W.dtype))
        self.merged_task = task_emb.detach().clone()
        self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge` (idempotent)."""
        if self.merged:
            with torch.no_grad():
                W = dense_weight(self.base_layer)
                W.copy_((W.float() - self.delta_weight(self.merged_task)).to(W.dtype))
            self.merged = False


@contextmanager
def task_context(model: nn.Module, task_emb: torch.Tensor) -> Iterator[None]:
    """Within the block, every :class:`MoELoRALinear` of ``model`` receives ``task_emb`` as its keyword argument.

    Args:
        model: a module containing MoE-LoRA layers.
        task_emb: [batch, task_dim].
    """
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "task_emb": task_emb}

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in model.modules()
               if isinstance(m, MoELoRALinear)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
