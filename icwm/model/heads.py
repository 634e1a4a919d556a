"""Per-task heads: read the x-tokens of each pair and return natural predictions in the task's Y_KEYS form.

Heads work in float32 at the output (complex outputs are complex64) whatever the trunk's dtype. Residual heads (det,
ce, cp, pf) add a learned correction to a classical first guess computed by the embedder (LMMSE, nearest pilot,
last sample, UL band), so an untrained model already answers sensibly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from icwm.config import check
from icwm.model.config import ModelConfig
from icwm.model.tokenizer import GRID_KEYS, pad_dim

FILTER_HALF_WIDTH = 2   # ce: pilots on each side of a group's own pilot in its interpolation filter
# demo_fit initial (ridge weight n0 in samples at the pair's tap power, weight w of the statistics pooled over units);
# cp's units are beams, whose predictors differ (measured on the Nt = 128 setup: pooling costs 1.6 dB there).
DEMO_FIT_INIT = {"ce": (16.0, 1.0), "cp": (1.0, 0.01)}


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

    The trunk token of a group emits complex coefficients ``C0``; each antenna's prediction adds ``C0 @ taps_n``.
    This is the structure of the classical estimators (LMMSE interpolation across pilots, AR / Wiener prediction
    over time), scale-equivariant and antenna-count agnostic. The coefficient projection starts at zero, so the
    head starts as without it.

    With ``demo_fit`` a correction filter ``D`` is fitted in context (ridge regression) to what the earlier pairs
    left unexplained: the residuals ``label - (other outputs of the head) - C0 taps`` regressed on the taps, with a
    ridge worth ``n0`` samples at pair p's own tap power (``n0`` learned, adjusted by the trunk). Pair p predicts
    ``C0 taps + D taps`` and never reads pairs >= p (exclusive prefix sums over pairs). With no earlier pair
    ``D = 0``; with many, ``C0 + D`` tends to the empirical Wiener filter of the configuration (what LMMSE / AR
    estimators compute from statistics), so predictions improve with k. The statistics of a fitting unit are its
    own plus ``w`` times their mean over all units (``w`` learned).

    ce: taps = 2 * ``FILTER_HALF_WIDTH`` + 1 pilots around the group's pilot, outputs = the group's subcarriers;
        fitting units = subcarrier groups, samples = antennas (frequency correlation is stationary in the band).
    cp: taps = the history (``max_time`` slots, front padded) per subcarrier, outputs = the future slots;
        fitting units = beams (unitary DFT over the antenna index), samples = subcarriers. A beam sees few paths,
        so its own temporal predictor is much sharper than one shared by all antennas (Doppler differs per path);
        time correlation does not depend on the subcarrier. Equivariant to cyclic shifts of the antenna index.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time, self.half = task, cfg.max_time, FILTER_HALF_WIDTH
        self.n_out = cfg.pilot_spacing if task == "ce" else cfg.max_time
        self.n_taps = 2 * self.half + 1 if task == "ce" else cfg.max_time
        self.coef = nn.Linear(cfg.d_model, 2 * self.n_out * self.n_taps)
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        self.demo_fit = cfg.demo_fit
        if cfg.demo_fit:
            n0, w = DEMO_FIT_INIT[task]                     # [1] shapes: DeepSpeed broadcasts 1-d tensors
            self.log_n0 = nn.Parameter(torch.full((1,), math.log(n0)))
            self.log_pool = nn.Parameter(torch.full((1,), math.log(w)))  # weight of the stats pooled over units
            self.n0_adj = nn.Linear(cfg.d_model, 1)         # adjustment of log n0 from the trunk, starts at zero
            nn.init.zeros_(self.n0_adj.weight)
            nn.init.zeros_(self.n0_adj.bias)

    def taps(self, x: torch.Tensor, n_g: int, group: int) -> torch.Tensor:
        """x: the input grid [B, P, Tx, Sx, N] c64 -> taps [B, P, G, sample, n_taps]."""
        if self.task == "ce":                                    # x: [B, P, 1, pilots, N]; groups = pilots
            xp = F.pad(x[:, :, 0].transpose(-1, -2), (self.half, self.half))        # [B, P, N, pilots + 2 half]
            return xp.unfold(-1, self.n_taps, 1)[:, :, :, :n_g].transpose(2, 3)    # [B, P, G, N, taps]
        hist = pad_dim(x, 2, self.max_time, front=True)                              # [B, P, T, S, N]
        hist = pad_dim(hist, 3, n_g * group).unflatten(3, (n_g, group))              # [B, P, T, G, gs, N]
        return hist.permute(0, 1, 3, 4, 5, 2).flatten(3, 4)                          # [B, P, G, gs N, T]

    def to_samples(self, y: torch.Tensor, n_g: int, group: int) -> torch.Tensor:
        """An output grid [B, P, Ty, Sy, N] -> [B, P, G, sample, Ty] (the layout of ``taps``; zero padded)."""
        y = pad_dim(y, 3, n_g * group).unflatten(3, (n_g, group))                    # [B, P, Ty, G, g, N]
        if self.task == "ce":
            return y[:, :, 0].permute(0, 1, 2, 4, 3)                                 # [B, P, G, N, group]
        return y.permute(0, 1, 3, 4, 5, 2).flatten(3, 4)                             # [B, P, G, gs N, Ty]

    def from_samples(self, o: torch.Tensor, shape: tuple, group: int) -> torch.Tensor:
        """Inverse of ``to_samples``: [B, P, G, sample, Ty] -> grid ``shape`` = (B, P, Ty, Sy, N)."""
        b, p, t_y, s_y, n = shape
        n_g = o.shape[2]
        if self.task == "ce":
            return o.permute(0, 1, 2, 4, 3).reshape(b, p, 1, n_g * group, n)[:, :, :, :s_y]
        o = o.unflatten(3, (group, n)).permute(0, 1, 5, 2, 3, 4)                     # [B, P, Ty, G, gs, N]
        return o.reshape(b, p, t_y, n_g * group, n)[:, :, :, :s_y]

    def fit(self, taps: torch.Tensor, resid: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Ridge correction filters from the earlier pairs.

        taps [B, P, U, sample, T], resid [B, P, U, sample, O] per fitting unit U, adj [B, P, U or 1] the trunk's
        log-n0 adjustment -> D [B, P, U, O, T]; pair p uses the statistics of pairs < p only.
        """
        gram = torch.einsum("bpust,bpusv->bputv", taps, taps.conj())                 # sum_s t t^H  [B, P, U, T, T]
        cross = torch.einsum("bpuso,bpusv->bpuov", resid, taps.conj())              # sum_s r t^H  [B, P, U, O, T]
        excl = lambda a: torch.cumsum(F.pad(a, (0,) * (2 * a.dim() - 4) + (1, -1)), 1)  # noqa: E731  pairs < p exactly
        gram, cross = excl(gram), excl(cross)
        pool = torch.exp(self.log_pool)
        gram, cross = gram + pool * gram.mean(2, keepdim=True), cross + pool * cross.mean(2, keepdim=True)
        power = taps.abs().pow(2).mean((-1, -2))                                     # [B, P, U] own tap power
        lam = (torch.exp(self.log_n0 + adj.clamp(-10.0, 10.0)) * power + 1e-12)[..., None, None]
        eye = torch.eye(self.n_taps, device=taps.device, dtype=taps.dtype)
        return torch.linalg.solve(gram + lam * eye, cross.mH).mH

    def correction(self, hx: torch.Tensor, x: torch.Tensor, resid: torch.Tensor, taps: torch.Tensor,
                   shape: tuple, group: int) -> torch.Tensor:
        """The in-context correction grid [B, P, Ty, Sy, N] from the residual grid ``resid`` (same shape)."""
        n_g = taps.shape[2]
        adj = self.n0_adj(hx).float()[..., 0]                                        # [B, P, G]
        if self.task == "ce":
            d = self.fit(taps, self.to_samples(resid, n_g, group), adj)
            return self.from_samples(torch.einsum("bpgot,bpgst->bpgso", d, taps), shape, group)
        beam = lambda g: torch.fft.fft(g, dim=-1, norm="ortho")                     # noqa: E731  antennas -> beams
        hist = pad_dim(beam(x), 2, self.max_time, front=True).permute(0, 1, 4, 3, 2)  # [B, P, N, S, T]
        d = self.fit(hist, beam(resid).permute(0, 1, 4, 3, 2), adj.mean(2, keepdim=True))  # [B, P, N, Ty, T]
        out = torch.einsum("bpnot,bpnst->bposn", d, hist)                           # [B, P, Ty, S, N]
        return torch.fft.ifft(out, dim=-1, norm="ortho")

    def forward(self, hx: torch.Tensor, x: torch.Tensor, shape: tuple, group: int, y: torch.Tensor | None = None,
                base: torch.Tensor | None = None) -> torch.Tensor:
        """Filter output [B, P, Ty, Sy, N] c64.

        hx [B, P, G, d] group tokens; x the task's input grid [B, P, Tx, Sx, N] c64; ``shape`` = (B, P, Ty, Sy, N)
        of the output; with ``demo_fit``, ``y`` the label grid and ``base`` the head's other outputs (same shape).
        """
        b, p, n_g, _ = hx.shape
        t_y = shape[2]
        c = torch.view_as_complex(self.coef(hx).float().reshape(b, p, n_g, self.n_out, self.n_taps, 2).contiguous())
        c = c[:, :, :, :t_y] if self.task == "cp" else c
        x = x.to(torch.complex64)
        taps = self.taps(x, n_g, group)                                              # [B, P, G, sample, T]
        out = self.from_samples(torch.einsum("bpgot,bpgst->bpgso", c, taps), shape, group)
        if self.demo_fit and p > 1:
            check(y is not None and base is not None, "FilterTaps(y, base)", "labels and base for demo_fit", None)
            out = out + self.correction(hx, x, y.to(torch.complex64) - base - out, taps, shape, group)
        return out


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
            out = out + self.filter(hx, ctx["x"], tuple(out.shape), self.gy, ctx["y"], out)
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
