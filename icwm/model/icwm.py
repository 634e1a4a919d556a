"""ICWM: the native in-context wireless model (task embedders -> block-causal transformer -> task heads)."""
from __future__ import annotations

import torch
from torch import nn

from icwm.config import check
from icwm.model.config import ModelConfig
from icwm.model.heads import build_head
from icwm.model.tokenizer import GRID_KEYS, build_embedder
from icwm.model.transformer import EpisodeTransformer

# Which input dimension is bounded by which tokeniser limit: task -> [(key, dim from the end, limit field)].
_LIMITS = {
    "pre_sr": [("h", -2, "max_users"), ("h", -1, "max_ant")],
    "pre_mm": [("h", -2, "max_users"), ("h", -1, "max_ant")],
    "det": [("h", -1, "max_users"), ("h", -2, "max_ant"), ("y", -2, "max_slots")],
    "bf": [("h_sub6", -1, "max_ant"), ("h_sub6", -2, "max_sc")],
    "de": [("h_sub6", -1, "max_ant"), ("h_sub6", -2, "max_sc")],
    "pe": [("h_sub6", -1, "max_ant"), ("h_sub6", -2, "max_sc")],
}
for _t, (_kx, _ky) in GRID_KEYS.items():
    _LIMITS[_t] = [(k, d, f) for k in (_kx, _ky) for d, f in ((-1, "max_ant"), (-2, "max_sc"), (-3, "max_time"))]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class ICWM(nn.Module):
    """In-context wireless transformer: one forward pass predicts every pair of an episode.

    Args:
        cfg: model configuration (see ``ModelConfig``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embedders = nn.ModuleDict({t: build_embedder(cfg, t) for t in cfg.tasks})
        self.heads = nn.ModuleDict({t: build_head(cfg, t) for t in cfg.tasks})
        self.task_emb = nn.Embedding(len(cfg.tasks), d)
        self.role_emb = nn.Embedding(2, d)  # 0: x-token, 1: y-token
        self.pair_emb = nn.Embedding(cfg.k_max + 1, d) if cfg.pos == "learned" else None
        self.trunk = EpisodeTransformer(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def check_batch(self, batch: dict) -> tuple[str, int]:
        """Validate the task, k and the tokeniser limits; returns (task, n_pairs)."""
        task, k = batch.get("task"), batch.get("k")
        check(task in self.cfg.tasks, "batch['task']", f"one of the model's tasks {self.cfg.tasks}", task)
        check(isinstance(k, int) and 0 <= k <= self.cfg.k_max, "batch['k']", f"an int in [0, {self.cfg.k_max}]", k)
        for key, dim, field in _LIMITS[task]:
            check(key in batch, f"batch[{key!r}]", f"a tensor for task {task}", None)
            x = batch[key]
            check(x.dim() >= 2 and x.shape[1] == k + 1, f"batch[{key!r}]", f"shape [B, k+1={k + 1}, ...]",
                  tuple(x.shape))
            limit = getattr(self.cfg, field)
            check(x.shape[dim] <= limit, f"batch[{key!r}]", f"dim {dim} <= model.{field} = {limit}", tuple(x.shape))
        return task, k + 1

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Predict every pair of the episodes in ``batch``.

        Args:
            batch: ``task`` (str), ``k`` (int) and, for the task's X_KEYS and Y_KEYS, tensors [B, k+1, ...]
                (the query is the last pair; its labels may be zeros).
        Returns:
            Natural predictions in the Y_KEYS form, [B, k+1, ...] (bf also ``beam_logits`` [B, k+1, n_beams]).
        """
        task, n_pairs = self.check_batch(batch)
        x, y, ctx = self.embedders[task](batch)            # [S, P, n_x, d], [S, P, n_y, d]
        s, _, n_x, d = x.shape
        n_y = y.shape[2]
        tid = torch.tensor(self.cfg.tasks.index(task), device=x.device)
        x = x + self.role_emb.weight[0] + self.task_emb(tid)
        y = y + self.role_emb.weight[1] + self.task_emb(tid)
        tok = torch.cat((x, y), dim=2)                     # [S, P, n_x + n_y, d]
        if self.pair_emb is not None:
            tok = tok + self.pair_emb.weight[:n_pairs, None, :]
        h = self.trunk(self.drop(tok.reshape(s, n_pairs * (n_x + n_y), d)), n_pairs, n_x, n_y)
        hx = h.reshape(s, n_pairs, n_x + n_y, d)[:, :, :n_x]  # x-tokens of every pair
        return self.heads[task](hx, ctx)


def build_model(cfg: ModelConfig) -> ICWM:
    """Build a freshly initialised ``ICWM`` (on CPU, float32; move it with ``.to()`` outside)."""
    return ICWM(cfg)
