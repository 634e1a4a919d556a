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
from icwm.model.tokenizer import GRID_KEYS, pad_dim

FILTER_HALF_WIDTH = 2   # ce: pilots on each side of a group's own pilot in its interpolation filter


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


class DemoAttention(nn.Module):
    """Per (antenna, subcarrier group): pair p attends to the earlier pairs' label lifts (and a learned null slot).

    This is where an antenna's own demonstrations reach its prediction (the trunk only sees antenna-pooled tokens):
    queries and keys come from the contextualised input lifts, values from input and label lifts. Pair p never sees
    pairs >= p (block-causal like the trunk). The output projection starts at zero, so the head starts as without it.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)
        self.v = nn.Linear(2 * d, d)
        self.null_k, self.null_v = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))
        self.o = nn.Linear(d, d)
        nn.init.zeros_(self.o.weight)
        nn.init.zeros_(self.o.bias)

    def forward(self, base: torch.Tensor, e_x: torch.Tensor, e_y: torch.Tensor) -> torch.Tensor:
        """base, e_x, e_y: [B, P, G, N, d] -> [B, P, G, N, d]."""
        b, p, g, n, d = base.shape
        heads = lambda t: t.permute(0, 2, 3, 1, 4).reshape(b * g * n, t.shape[1], self.n_heads, -1).transpose(1, 2)  # noqa: E731
        q = heads(self.q(base))                                                     # [BGN, h, P, dh]
        kv_k = torch.cat((self.null_k.expand(b, 1, g, n, d), self.k(base)), 1)      # [B, 1 + P, G, N, d]
        kv_v = torch.cat((self.null_v.expand(b, 1, g, n, d), self.v(torch.cat((e_x, e_y), -1))), 1)
        mask = torch.ones(p, p + 1, dtype=torch.bool, device=base.device).tril()    # key j (pair j - 1) < query p
        a = F.scaled_dot_product_attention(q, heads(kv_k), heads(kv_v), attn_mask=mask)  # [BGN, h, P, dh]
        a = a.transpose(1, 2).reshape(b, g, n, p, d).permute(0, 3, 1, 2, 4)
        return self.o(a)


class FilterTaps(nn.Module):
    """Context-generated linear filters on each antenna's own inputs (ce: a pilot window, cp: the history).

    The trunk token of a group emits complex coefficients; each antenna's prediction adds ``C @ taps_n``. This is
    the structure of the classical estimators (LMMSE interpolation across pilots, AR / Wiener prediction over time),
    scale-equivariant and antenna-count agnostic; the demonstrations refine ``C`` through the trunk. The coefficient
    projection starts at zero, so the head starts as without it.

    ce: taps = 2 * ``FILTER_HALF_WIDTH`` + 1 pilots around the group's pilot, outputs = the group's subcarriers.
    cp: taps = the history (``max_time`` slots, front padded) per subcarrier, outputs = the future slots.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time, self.half = task, cfg.max_time, FILTER_HALF_WIDTH
        self.n_out = cfg.pilot_spacing if task == "ce" else cfg.max_time
        self.n_taps = 2 * self.half + 1 if task == "ce" else cfg.max_time
        self.coef = nn.Linear(cfg.d_model, 2 * self.n_out * self.n_taps)
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)

    def forward(self, hx: torch.Tensor, x: torch.Tensor, t_y: int, s_y: int, group: int) -> torch.Tensor:
        """hx [B, P, G, d], x the task's input grid [B, P, Tx, Sx, N] c64 -> correction [B, P, Ty, Sy, N] c64."""
        b, p, n_g, _ = hx.shape
        c = torch.view_as_complex(self.coef(hx).float().reshape(b, p, n_g, self.n_out, self.n_taps, 2).contiguous())
        if self.task == "ce":                                    # x: [B, P, 1, pilots, N]; groups = pilots
            xp = F.pad(x[:, :, 0].transpose(-1, -2), (self.half, self.half))        # [B, P, N, pilots + 2 half]
            taps = xp.unfold(-1, self.n_taps, 1)[:, :, :, :n_g]                    # [B, P, N, G, taps]
            out = torch.einsum("bpgot,bpngt->bpgon", c, taps)                       # [B, P, G, pilot_spacing, N]
            return out.reshape(b, p, 1, n_g * self.n_out, -1)[:, :, :, :s_y]
        hist = pad_dim(x, 2, self.max_time, front=True)                              # [B, P, max_time, S, N]
        hist = pad_dim(hist, 3, n_g * group).unflatten(3, (n_g, group))              # [B, P, T, G, gs, N]
        out = torch.einsum("bpgot,bptgsn->bpogsn", c[:, :, :, :t_y], hist)          # [B, P, Ty, G, gs, N]
        return out.reshape(b, p, t_y, n_g * group, -1)[:, :, :, :s_y]


class GridHead(nn.Module):
    """ce / cp / pf: every antenna decoded from its own input lift ``e_n`` and its group's output token.

    out_n = anchor_n + W_o silu(e_n + W_c token [+ demo attention]): corrections [time, group size] per antenna,
    unfolded to [time, sc]. With ``cfg.demo_attn`` each antenna also reads its own earlier pairs (``DemoAttention``).
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.key = GRID_KEYS[task][1]
        self.max_time = cfg.max_time
        self.gy = cfg.pilot_spacing if task == "ce" else cfg.sc_group
        self.ctx = nn.Linear(cfg.d_model, cfg.d_model)
        self.demo = DemoAttention(cfg) if cfg.demo_attn else None
        self.filter = FilterTaps(cfg, task) if cfg.grid_filter and task in ("ce", "cp") else None
        self.out = nn.Linear(cfg.d_model, 2 * cfg.max_time * self.gy)

    def forward(self, hx: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        """hx: [B, P, G, d] -> {key: [B, P, Ty, Sy, N] complex64}."""
        b, p, n_g, _ = hx.shape
        n, t_y = ctx["e_x"].shape[3], ctx["t_y"]
        base = ctx["e_x"] + self.ctx(hx)[:, :, :, None]                            # [B, P, G, N, d]
        if self.demo is not None:
            base = base + self.demo(base, ctx["e_x"], ctx["e_y"])
        o = self.out(F.silu(base)).float().reshape(b, p, n_g, n, self.max_time, self.gy, 2)[:, :, :, :, :t_y]
        o = o.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, p, t_y, n_g * self.gy, n, 2)[:, :, :, : ctx["s_y"]]
        out = ctx["anchor"].to(torch.complex64) + torch.view_as_complex(o.contiguous())
        if self.filter is not None:
            out = out + self.filter(hx, ctx["x"], t_y, ctx["s_y"], self.gy)
        return {self.key: out}


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
