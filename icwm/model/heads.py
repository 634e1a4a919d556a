"""Per-task heads: read the x-tokens of each pair and return natural predictions in the task's Y_KEYS form.

Heads work in float32 at the output (complex outputs are complex64) whatever the trunk's dtype. Residual heads (det,
ce, cp, pf) add a learned correction to a classical first guess computed by the embedder (LMMSE, nearest pilot,
last sample, UL band), so an untrained model already answers sensibly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icwm.model.config import ModelConfig
from icwm.model.tokenizer import GRID_KEYS


class PrecodingHead(nn.Module):
    """pre_sr / pre_mm: per-user token -> (lambda, p) logits, softmax over users (each column sums to 1)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.d_model, 2)

    def forward(self, hx: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        """hx: [B, P, K, d] -> {"lam_p": [B, P, K, 2] float32}."""
        return {"lam_p": torch.softmax(self.out(hx).float(), dim=-2)}


class DetHead(nn.Module):
    """det: per-user token -> symbol corrections over the (padded) slots, added to the LMMSE estimate."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.max_slots = cfg.max_slots
        self.out = nn.Linear(cfg.d_model, 2 * cfg.max_slots)

    def forward(self, hx: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        """hx: [B, P, K, d] -> {"x": [B, P, slot, K] complex64}."""
        o = self.out(hx).float().unflatten(-1, (self.max_slots, 2))[..., : ctx["n_slots"], :]  # [B, P, K, S, 2]
        corr = torch.view_as_complex(o.contiguous()).transpose(-1, -2)                        # [B, P, S, K]
        return {"x": ctx["anchor"].to(torch.complex64) + corr}


class GridHead(nn.Module):
    """ce / cp / pf: every antenna decoded from its own input lift ``e_n`` and its group's output token.

    out_n = anchor_n + W_o silu(e_n + W_c token): corrections [time, group size] per antenna, unfolded to [time, sc].
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.key = GRID_KEYS[task][1]
        self.max_time = cfg.max_time
        self.gy = cfg.pilot_spacing if task == "ce" else cfg.sc_group
        self.ctx = nn.Linear(cfg.d_model, cfg.d_model)
        self.out = nn.Linear(cfg.d_model, 2 * cfg.max_time * self.gy)

    def forward(self, hx: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        """hx: [B, P, G, d] -> {key: [B, P, Ty, Sy, N] complex64}."""
        b, p, n_g, _ = hx.shape
        n, t_y = ctx["e_x"].shape[3], ctx["t_y"]
        h = F.silu(ctx["e_x"] + self.ctx(hx)[:, :, :, None])                        # [B, P, G, N, d]
        o = self.out(h).float().reshape(b, p, n_g, n, self.max_time, self.gy, 2)[:, :, :, :, :t_y]
        o = o.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, p, t_y, n_g * self.gy, n, 2)[:, :, :, : ctx["s_y"]]
        return {self.key: ctx["anchor"].to(torch.complex64) + torch.view_as_complex(o.contiguous())}


class Sub6Head(nn.Module):
    """bf / de / pe: mean of the pair's x-tokens -> beam logits, distance (m) or path loss (dB)."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task = task
        n_out = cfg.n_beams if task == "bf" else 1
        self.out = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.SiLU(), nn.Linear(cfg.d_model, n_out))

    def forward(self, hx: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        """hx: [B, P, G, d] -> bf {"beam_logits" [B, P, n_beams], "beam" [B, P] int64}; de / pe [B, P] float32."""
        o = self.out(hx.mean(-2)).float()
        if self.task == "bf":
            return {"beam_logits": o, "beam": o.argmax(-1)}
        if self.task == "de":
            return {"distance_m": 100.0 * torch.exp(o[..., 0].clamp(-8.0, 8.0))}
        return {"pathloss_db": 100.0 + 20.0 * o[..., 0]}


def build_head(cfg: ModelConfig, task: str) -> nn.Module:
    """The task's head."""
    if task in ("pre_sr", "pre_mm"):
        return PrecodingHead(cfg)
    if task == "det":
        return DetHead(cfg)
    if task in GRID_KEYS:
        return GridHead(cfg, task)
    return Sub6Head(cfg, task)
