"""ce / cp / pf: channel grids [time, sc, ant], one token per subcarrier group, antennas as a set.

Learned: the group tokens (a DeepSets pool over antennas of per-antenna lifts), each antenna's correction of the
first guess decoded from its own lift and its group's trunk output, and the coefficients of a linear filter on
each antenna's own inputs that the group's token generates (``FilterTaps``, ce and cp: the structure of LMMSE
interpolation across pilots and of AR prediction over time, scale-equivariant and antenna-count agnostic); in the
latent form what the link's SNR is, through the trunk.
Closed form: the first guess (nearest pilot for ce, the UL band for pf; for cp the last sample or, with
``cfg.cp_first_guess == "ar"``, the history's own AR prediction) and, with ``cfg.icr``, the in-context regression of
the remaining error on the demonstrations (``grid_icr.py``).

Head = first guess + learned correction + token-generated filter; add-ons: ``GridFit`` (``cfg.icr``). With
``cfg.grid_fit_drop`` a random share of the training episodes runs without the fit, so what comes before it is
trained as a prediction on its own (all a k = 0 query has) rather than as an input the fit repairs; with
``cfg.grid_gate_table`` the learned parts are scaled by a trained factor per number of earlier pairs (``gate``), so
a pair with none (k = 0) can keep less of them than pairs whose fit repairs them; the tasks in
``cfg.grid_k0_first_guess`` give that pair the first guess alone at inference (training still scores the learned
parts there, as a prediction of their own).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from icwm.model.common import c2r, pad_dim, scalar_feature, sinusoid
from icwm.model.config import ModelConfig
from icwm.model.grid_icr import GridFit, groups_to_grid, pilot_window
from icwm.wireless import prediction

KEYS = {"ce": ("h_ls", "h"), "cp": ("h_hist", "h_fut"), "pf": ("h_ul", "h_dl")}   # (input grid, label grid)
LIMITS = {t: [(k, d, f) for k in kk for d, f in ((-1, "max_ant"), (-2, "max_sc"), (-3, "max_time"))]
          for t, kk in KEYS.items()}
SNR_SCALE = 20.0                      # dB per feature unit


@dataclass
class GridCtx:
    """What the head needs: first guess, per-antenna lifts, the input and label grids, and the output size."""

    anchor: torch.Tensor      # [B, P, Ty, Sy, N] complex
    e_x: torch.Tensor         # [B, P, G, N, d] per-antenna input lifts
    x: torch.Tensor           # [B, P, Tx, Sx, N] input grid
    y: torch.Tensor           # [B, P, Ty, Sy, N] label grid (the query's may be zeros)
    t_y: int
    s_y: int


class GridEmbed(nn.Module):
    """Per antenna and group, features (time padded to ``max_time``; SNR or its missing flag) are lifted to ``d``
    (``e``), and the token is a DeepSets pool over antennas, ``post(mean_n silu(e_n))``."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time, self.d = task, cfg.max_time, cfg.d_model
        self.ar = task == "cp" and cfg.cp_first_guess == "ar"
        self.gx = 1 if task == "ce" else cfg.sc_group
        self.gy = cfg.pilot_spacing if task == "ce" else cfg.sc_group
        self.x_in = nn.Linear(2 * cfg.max_time * self.gx + 2, cfg.d_model)
        self.y_in = nn.Linear(2 * cfg.max_time * self.gy, cfg.d_model)
        self.x_post, self.y_post = nn.Linear(cfg.d_model, cfg.d_model), nn.Linear(cfg.d_model, cfg.d_model)

    def _group(self, g: torch.Tensor, size: int, n_groups: int, front: bool) -> torch.Tensor:
        """g: [B, P, T, S, N] complex -> [B, P, n_groups, N, 2 * max_time * size] float."""
        g = pad_dim(g, 3, n_groups * size)
        g = g.unflatten(3, (n_groups, size)).permute(0, 1, 3, 5, 2, 4)  # [B, P, n_g, N, T, size]
        return pad_dim(c2r(g), -3, self.max_time, front=front).flatten(-3)

    def _anchor(self, xg: torch.Tensor, t_y: int, s_y: int) -> torch.Tensor:
        """First guess [B, P, t_y, s_y, N] complex: nearest pilot (ce), last sample or the history's AR prediction
        (cp; repeat-last where the history is too short to fit an AR predictor), UL band (pf)."""
        if self.task == "ce":
            return xg.repeat_interleave(self.gy, dim=3)[:, :, :, :s_y]
        if self.task == "cp":
            if self.ar and xg.shape[2] >= 2:
                return prediction.ar_predict(xg.to(torch.complex64), t_y)
            return xg[:, :, -1:].expand(xg.shape[:2] + (t_y, s_y, xg.shape[-1]))
        return xg

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, GridCtx]:
        """x grid [B, P, Tx, Sx, N], y grid [B, P, Ty, Sy, N] c64, snr_db [B, P] (optional) -> tokens
        [B, P, n_groups, d]."""
        kx, ky = KEYS[self.task]
        xg, yg = batch[kx], batch[ky]
        t_y, s_y = yg.shape[2], yg.shape[3]
        n_g = -(-xg.shape[3] // self.gx)
        fx = self._group(xg, self.gx, n_g, front=self.task == "cp")         # [B, P, n_g, N, Fx]
        snr = scalar_feature(batch, "snr_db", SNR_SCALE, xg)                 # [B, P, 2]
        fx = torch.cat((fx, snr[:, :, None, None, :].expand(fx.shape[:4] + (2,))), -1)
        dt = self.x_in.weight.dtype
        pos = sinusoid(n_g, self.d, xg.device).to(dt)                        # [n_g, d]
        e_x = self.x_in(fx.to(dt))                                           # [B, P, n_g, N, d]
        x = self.x_post(F.silu(e_x).mean(3)) + pos
        y = self.y_post(F.silu(self.y_in(self._group(yg, self.gy, n_g, False).to(dt))).mean(3)) + pos
        return x, y, GridCtx(anchor=self._anchor(xg, t_y, s_y), e_x=e_x, x=xg, y=yg, t_y=t_y, s_y=s_y)


class FilterTaps(nn.Module):
    """Token-generated linear filters on each antenna's own inputs (ce: a pilot window, cp: the history).

    The trunk token of a group emits complex coefficients ``C``; each antenna's prediction adds ``C @ taps_n``.
    ce: taps = ``2 cfg.filter_half_width + 1`` pilots around the group's pilot, outputs = the group's subcarriers.
    cp: taps = the history (``max_time`` slots, front padded) per subcarrier, outputs = the future slots.
    The coefficient projection starts at zero, so the head starts as without it.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time, self.half = task, cfg.max_time, cfg.filter_half_width
        self.n_out = cfg.pilot_spacing if task == "ce" else cfg.max_time
        self.n_taps = 2 * self.half + 1 if task == "ce" else cfg.max_time
        self.coef = nn.Linear(cfg.d_model, 2 * self.n_out * self.n_taps)
        nn.init.zeros_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)

    def forward(self, hx: torch.Tensor, x: torch.Tensor, shape: tuple, group: int) -> torch.Tensor:
        """hx [B, P, G, d] group tokens, x the input grid [B, P, Tx, Sx, N] -> filter output ``shape``
        = (B, P, Ty, Sy, N) c64."""
        b, p, n_g, _ = hx.shape
        t_y, s_y, n = shape[2], shape[3], shape[4]
        c = torch.view_as_complex(self.coef(hx).float().reshape(b, p, n_g, self.n_out, self.n_taps, 2).contiguous())
        x = x.to(torch.complex64)
        if self.task == "ce":
            taps = pilot_window(x, self.half, n_g)                                   # [B, P, G, N, taps]
            return groups_to_grid(torch.einsum("bpgot,bpgnt->bpgno", c, taps), s_y)
        hist = pad_dim(pad_dim(x, 2, self.max_time, front=True), 3, n_g * group)    # [B, P, T, G g, N]
        taps = hist.unflatten(3, (n_g, group)).permute(0, 1, 3, 4, 5, 2)           # [B, P, G, g, N, T]
        out = torch.einsum("bpgot,bpgsnt->bpogsn", c[:, :, :, :t_y], taps)          # [B, P, Ty, G, g, N]
        return out.reshape(b, p, t_y, n_g * group, n)[:, :, :, :s_y]


class GridHead(nn.Module):
    """out_n = first guess_n + gate_j [W_o silu(e_n + W_c token) (corrections [time, group size] per antenna,
    unfolded to [time, sc]) + ``FilterTaps`` (ce, cp)] + ``GridFit`` (with ``cfg.icr``); ``gate`` [k_max + 1] is a
    trained table over the number of earlier pairs j (with ``cfg.grid_gate_table``; else 1). With the task in
    ``cfg.grid_k0_first_guess`` pair 0's out is the first guess alone in eval mode."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.key = KEYS[task][1]
        self.max_time = cfg.max_time
        self.gy = cfg.pilot_spacing if task == "ce" else cfg.sc_group
        self.ctx = nn.Linear(cfg.d_model, cfg.d_model)
        self.filter = FilterTaps(cfg, task) if task in ("ce", "cp") else None
        self.fit = GridFit(cfg, task) if cfg.icr else None
        self.fit_drop = cfg.grid_fit_drop
        self.out = nn.Linear(cfg.d_model, 2 * cfg.max_time * self.gy)
        self.gate = nn.Parameter(torch.ones(cfg.k_max + 1)) if cfg.grid_gate_table else None
        self.k0_first_guess = task in cfg.grid_k0_first_guess

    def gated(self, part: torch.Tensor, n_pairs: int) -> torch.Tensor:
        """A learned part of the predictions [B, P, Ty, Sy, N], pair j's times ``gate[j]`` (j: its earlier pairs)."""
        return part if self.gate is None else part * self.gate[:n_pairs].float()[None, :, None, None, None]

    def forward(self, hx: torch.Tensor, ctx: GridCtx, latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hx: [B, P, G, d] -> {key: [B, P, Ty, Sy, N] complex64}."""
        b, p, n_g, _ = hx.shape
        n, t_y = ctx.e_x.shape[3], ctx.t_y
        base = ctx.e_x + self.ctx(hx)[:, :, :, None]                                # [B, P, G, N, d]
        o = self.out(F.silu(base)).float().reshape(b, p, n_g, n, self.max_time, self.gy, 2)[:, :, :, :, :t_y]
        o = o.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, p, t_y, n_g * self.gy, n, 2)[:, :, :, : ctx.s_y]
        out = ctx.anchor.to(torch.complex64) + self.gated(torch.view_as_complex(o.contiguous()), p)
        if self.filter is not None:
            out = out + self.gated(self.filter(hx, ctx.x, tuple(out.shape), self.gy), p)
        if self.fit is not None and p > 1:
            fit = self.fit(ctx.x.to(torch.complex64), ctx.y.to(torch.complex64), out)
            if self.training and self.fit_drop > 0:     # these episodes train the pre-fit prediction, k = 0's
                keep = (torch.rand(b, device=fit.device) >= self.fit_drop).to(fit.real.dtype)
                fit = fit * keep[:, None, None, None, None]
            out = out + fit
        if self.k0_first_guess and not self.training:   # pair 0 (no earlier pairs): the first guess alone (training
            out = torch.cat((ctx.anchor[:, :1].to(out.dtype), out[:, 1:]), 1)   # scores the learned parts there)
        return {self.key: out}
