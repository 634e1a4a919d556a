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
from icwm.model.band import BandMap
from icwm.model.handover import LmmseHandover
from icwm.model.fit import prefix_stats, ridge_prior, ridge_solve, unit_ridge
from icwm.model.tokenizer import GRID_KEYS, SUB6_Y, pad_dim, sub6_from_z

FILTER_HALF_WIDTH = 2   # ce: pilots on each side of a group's own pilot in its interpolation filter
# demo_fit initial (ridge weight n0 in samples at the pair's tap power, its extra log-weight at one earlier pair
# (``fit.ridge_prior``), weight w of the statistics pooled over units). cp's units are beams, whose predictors differ
# (measured on the Nt = 128 setup: pooling costs 1.6 dB there); cp's 17-regressor fit from one pair needs a ~30x
# stronger ridge than from 16 (measured on the seen link family with the v4 weights: k = 1 -5.98 dB at n0 = 1,
# -7.27 dB at n0 = 30; k = 0 -6.45 dB).
DEMO_FIT_INIT = {"ce": (16.0, 0.0, 1.0), "cp": (1.0, 3.0, 0.01)}
SUB6_FEATURES = 6       # de / pe: learned regressors of the in-context fit (besides the intercept and the power)
# de / pe: initial ridge of that fit, in samples (regressors are O(1)). pe's label is set by the query's received
# power and angle spectrum up to a per-system offset far below one query's error (measured, v6 weights, 192 queries
# per dual system: |offset| <= 0.5 dB, per-query rms error 2.0-2.9 dB), so its fit must be shrunk hard: at n0 = 1 the
# k = 1 prediction lost 0.2 dB MAE, at n0 = 20 0.04 dB.
SUB6_N0 = {"de": 1.0, "pe": 20.0}
# bf: initial weight of the sub-6 angle-spectrum prior logits: the cross-entropy optimum of the prior alone (measured
# on 384 / 256 held-out dual_seen / dual_unseen queries: CE 4.54 / 4.13 at 0.5, 4.07 / 3.38 at 2, 4.17 / 3.35 at 3).
SUB6_PRIOR_W = 2.5
# bf: initial weight of the earlier pairs' beam votes. 0: the demos are other UEs of the cell, whose small-scale
# fading 38.901 draws independently of the query's (version 7 with its trained weight 0.99 vs 0, 576 / 384 held-out
# seen / unseen queries: top-1 -0.004..-0.011 and gain ratio -0.008..-0.014 at every k >= 1, cross-entropy +-0.001).
SUB6_VOTE_W = 0.0


def earlier_pairs_mask(p: int, device: torch.device) -> torch.Tensor:
    """Attention mask [P, 1 + P] over a null slot then the pairs: query pair p sees the null slot and pairs < p."""
    return torch.ones(p, p + 1, dtype=torch.bool, device=device).tril()


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
        mask = earlier_pairs_mask(p, base.device)
        a = F.scaled_dot_product_attention(q, heads(kv_k), heads(kv_v), attn_mask=mask)  # [BGN, h, P, dh]
        a = a.transpose(1, 2).reshape(b, g, n, p, d).permute(0, 3, 1, 2, 4)
        return self.o(a)


class FilterTaps(nn.Module):
    """Context-generated linear filters on each antenna's own inputs (ce: a pilot window, cp: the history).

    The trunk token of a group emits complex coefficients ``C0``; each antenna's prediction adds ``C0 @ taps_n``.
    This is the structure of the classical estimators (LMMSE interpolation across pilots, AR / Wiener prediction
    over time), scale-equivariant and antenna-count agnostic. The coefficient projection starts at zero, so the
    head starts as without it.

    With ``demo_fit`` a correction is fitted in context (ridge regression) to what the earlier pairs left
    unexplained: the residuals ``label - b`` (``b``: the head's prediction without the correction, anchor + learned
    correction + ``C0`` taps) regressed on the taps and on ``b`` itself, with a ridge worth ``n0`` samples at pair p's
    own regressor power (``n0`` learned, larger with fewer earlier pairs: ``fit.ridge_prior``). Pair p predicts
    ``b + D [taps, b]`` and never reads pairs >= p (exclusive prefix sums over pairs). With no earlier pair
    ``D = 0``; with many, the prediction tends to the configuration's empirical Wiener filter (what LMMSE / AR
    estimators compute from statistics) plus as much of the learned non-linear part as the demonstrations show to
    help, so predictions improve with k. The statistics of a fitting unit are its own plus ``w`` times their mean
    over all units (``w`` learned).

    ce: taps = 2 * ``FILTER_HALF_WIDTH`` + 1 pilots around the group's pilot (the fit's taps: 2 *
        ``cfg.fit_half_width`` + 1, a wider window: it has no parameters, the demonstrations pin it down), outputs =
        the group's subcarriers; fitting units = subcarrier groups, samples = antennas (frequency correlation is
        stationary in the band).
    cp: taps = the history (``max_time`` slots, front padded) per subcarrier, outputs = the future slots;
        fitting units = beams (unitary DFT over the antenna index), samples = subcarriers. A beam sees few paths,
        so its own temporal predictor is much sharper than one shared by all antennas (Doppler differs per path);
        time correlation does not depend on the subcarrier. Equivariant to cyclic shifts of the antenna index.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time, self.half = task, cfg.max_time, FILTER_HALF_WIDTH
        self.fit_half = cfg.fit_half_width
        self.n_out = cfg.pilot_spacing if task == "ce" else cfg.max_time
        self.n_taps = 2 * self.half + 1 if task == "ce" else cfg.max_time
        self.coef = nn.Linear(cfg.d_model, 2 * self.n_out * self.n_taps)
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        self.demo_fit = cfg.demo_fit
        if cfg.demo_fit:
            n0, slope, w = DEMO_FIT_INIT[task]              # [1] shapes: DeepSpeed broadcasts 1-d tensors
            self.log_n0 = nn.Parameter(torch.full((1,), math.log(n0)))
            self.n0_slope = nn.Parameter(torch.full((1,), slope))
            self.log_pool = nn.Parameter(torch.full((1,), math.log(w)))  # weight of the stats pooled over units

    @staticmethod
    def pilot_window(x: torch.Tensor, half: int, n_g: int) -> torch.Tensor:
        """ce input [B, P, 1, pilots, N] -> [B, P, G, N, 2 half + 1]: pilots g - half .. g + half (zero padded)."""
        xp = F.pad(x[:, :, 0].transpose(-1, -2), (half, half))                    # [B, P, N, pilots + 2 half]
        return xp.unfold(-1, 2 * half + 1, 1)[:, :, :, :n_g].transpose(2, 3)

    def taps(self, x: torch.Tensor, n_g: int, group: int) -> torch.Tensor:
        """x: the input grid [B, P, Tx, Sx, N] c64 -> taps [B, P, G, sample, n_taps]."""
        if self.task == "ce":                                    # x: [B, P, 1, pilots, N]; groups = pilots
            return self.pilot_window(x, self.half, n_g)
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

    def fit(self, reg: torch.Tensor, resid: torch.Tensor) -> torch.Tensor:
        """Ridge correction from the earlier pairs: reg [B, P, U, sample, F] regressors and resid [B, P, U, sample, O]
        per fitting unit U -> the correction [B, P, U, sample, O] (pair p uses the statistics of pairs < p only)."""
        n0 = ridge_prior(self.log_n0, self.n0_slope, reg.shape[1])
        return unit_ridge(reg, resid, n0, torch.exp(self.log_pool))

    def correction(self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor, taps: torch.Tensor, group: int
                   ) -> torch.Tensor:
        """The in-context correction grid [B, P, Ty, Sy, N] from the label grid ``y`` and the prediction ``b``."""
        n_g = taps.shape[2]
        if self.task == "ce":
            b_s = self.to_samples(b, n_g, group)                                     # [B, P, G, N, O]
            reg = torch.cat((self.pilot_window(x, self.fit_half, n_g), b_s), -1)
            return self.from_samples(self.fit(reg, self.to_samples(y, n_g, group) - b_s), tuple(b.shape), group)
        beam = lambda g: torch.fft.fft(g, dim=-1, norm="ortho").permute(0, 1, 4, 3, 2)  # noqa: E731  [B, P, N, S, T]
        hist = pad_dim(x, 2, self.max_time, front=True)
        b_b = beam(b)
        corr = self.fit(torch.cat((beam(hist), b_b), -1), beam(y) - b_b)             # [B, P, N, S, Ty]
        return torch.fft.ifft(corr.permute(0, 1, 4, 3, 2), dim=-1, norm="ortho")

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
            out = out + self.correction(x, y.to(torch.complex64), base + out, taps, group)
        return out


class GridHead(nn.Module):
    """ce / cp / pf: every antenna decoded from its own input lift ``e_n`` and its group's output token.

    out_n = anchor_n + W_o silu(e_n + W_c token [+ demo attention]): corrections [time, group size] per antenna,
    unfolded to [time, sc]. With ``cfg.demo_attn`` each antenna also reads its own earlier pairs (``DemoAttention``);
    ce / cp add ``FilterTaps`` (with ``cfg.grid_filter``), pf the in-context band map ``BandMap`` (with
    ``cfg.demo_fit``).
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.key = GRID_KEYS[task][1]
        self.max_time = cfg.max_time
        self.gy = cfg.pilot_spacing if task == "ce" else cfg.sc_group
        self.ctx = nn.Linear(cfg.d_model, cfg.d_model)
        self.demo = DemoAttention(cfg) if cfg.demo_attn else None
        self.filter = FilterTaps(cfg, task) if cfg.grid_filter and task in ("ce", "cp") else None
        self.band = BandMap() if cfg.demo_fit and task == "pf" else None
        self.handover = LmmseHandover(cfg.pilot_spacing) if cfg.ce_handover and task == "ce" else None
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
        if self.band is not None and p > 1:
            out = out + self.band(ctx["x"].to(torch.complex64), ctx["y"].to(torch.complex64), out)
        if self.handover is not None and p > 1:
            out = self.handover(ctx["x"].to(torch.complex64), ctx["y"].to(torch.complex64), ctx["snr_db"], out)
        return {self.key: out}


class Sub6Head(nn.Module):
    """bf / de / pe: mean of the pair's x-tokens -> beam logits, distance (m) or path loss (dB).

    With ``demo_fit`` the earlier pairs of the episode (other UEs of the same cell) enter directly:
    de / pe: a ridge regression, fitted per pair to the earlier pairs, of what the trunk's estimate ``z0`` missed
        (in ``sub6_to_z`` space) on ``[1, received power, learned features]``: the cell's own path-loss law and
        offset, where the trunk only knows the training cells' (ridge ``n0`` learned, in samples).
    bf: the sub-6 angle spectrum read at the mmWave beams (the classical angle map, soft) as logits, sharpened or
        flattened per pair by a learned confidence ``exp(out(h))`` (argmax-preserving: free per-beam logits lowered
        the cross-entropy but moved the decision off the spectrum's peak, halving top-1 on training and held-out
        cells alike), plus a vote of the earlier pairs' beams weighted by attention over their tokens (a learned
        nearest-neighbour fingerprint, with a null slot for "none alike"). Without ``demo_fit``: free logits.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.demo_fit = task, cfg.demo_fit
        n_out = cfg.n_beams if task == "bf" and not cfg.demo_fit else 1
        d = cfg.d_model
        self.out = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, n_out))
        if not cfg.demo_fit:
            return
        if task == "bf":
            self.prior_w = nn.Parameter(torch.full((1,), SUB6_PRIOR_W))
            self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)
            self.null_k = nn.Parameter(torch.zeros(d))
            self.vote_w = nn.Parameter(torch.full((1,), SUB6_VOTE_W))
            nn.init.zeros_(self.out[-1].weight)   # confidence starts at 1: the untrained head is the angle map
            nn.init.zeros_(self.out[-1].bias)
        else:
            self.feat = nn.Linear(d, SUB6_FEATURES)
            self.log_n0 = nn.Parameter(torch.full((1,), math.log(SUB6_N0[task])))
            self.n0_slope = nn.Parameter(torch.zeros(1))

    def vote(self, h: torch.Tensor, label: torch.Tensor, n_beams: int) -> torch.Tensor:
        """h [B, P, d] pair tokens, label [B, P] beams -> [B, P, n_beams] attention-weighted votes of pairs < p."""
        b, p, d = h.shape
        keys = torch.cat((self.null_k.expand(b, 1, d), self.k(h)), 1).float()        # [B, 1 + P, d]
        vals = torch.cat((torch.zeros(b, 1, n_beams, device=h.device),
                          F.one_hot(label, n_beams).float()), 1)                    # [B, 1 + P, n_beams]
        mask = earlier_pairs_mask(p, h.device)
        return F.scaled_dot_product_attention(self.q(h).float(), keys, vals, attn_mask=mask)

    def regress(self, h: torch.Tensor, z0: torch.Tensor, ctx: dict) -> torch.Tensor:
        """Ridge correction of z0 [B, P] from the earlier pairs' residuals ``label - z0``: [B, P]."""
        reg = torch.cat((torch.ones_like(z0)[..., None], ctx["power"].float()[..., None],
                         torch.tanh(self.feat(h).float())), -1)[:, :, None]          # [B, P, sample 1, F]
        gram, cross = prefix_stats(reg, (ctx["label"].float() - z0)[..., None, None])
        n0 = ridge_prior(self.log_n0, self.n0_slope, reg.shape[1])
        coef = ridge_solve(gram, cross, n0.expand(gram.shape[:2]))                  # [B, P, 1, F]
        return (coef[:, :, 0] * reg[:, :, 0]).sum(-1)

    def forward(self, hx: torch.Tensor, ctx: dict) -> dict[str, torch.Tensor]:
        """hx: [B, P, G, d] -> bf {"beam_logits" [B, P, n_beams], "beam" [B, P] int64}; de / pe [B, P] float32."""
        h = hx.mean(-2)
        o = self.out(h).float()
        fit = self.demo_fit and hx.shape[1] > 1
        if self.task == "bf":
            if self.demo_fit:
                w = self.prior_w.clamp_min(1e-3)                         # w > 0: the prior's argmax is kept
                o = torch.exp(o.clamp(-5.0, 5.0)) * w * ctx["prior"]
            if fit:
                o = o + self.vote_w * self.vote(h, ctx["label"], o.shape[-1])
            return {"beam_logits": o, "beam": o.argmax(-1)}
        z = o[..., 0] + self.regress(h, o[..., 0], ctx) if fit else o[..., 0]
        return {SUB6_Y[self.task]: sub6_from_z(self.task, z)}


def build_head(cfg: ModelConfig, task: str) -> nn.Module:
    """The task's head."""
    if task in ("pre_sr", "pre_mm"):
        return PrecodingHead(cfg)
    if task == "det":
        return DetHead(cfg)
    if task in GRID_KEYS:
        return GridHead(cfg, task)
    return Sub6Head(cfg, task)
