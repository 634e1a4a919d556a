"""Episode -> tokens: one small embedder per task, built on antenna-, user- and size-agnostic features.

Every embedder maps a batch (tensors ``[batch, pair, ...]``, pair = k + 1) to x-tokens ``[batch, pair, n_x, d]``,
y-tokens ``[batch, pair, n_y, d]`` and a context dict the matching head needs. Natural units:

- pre_sr / pre_mm: one token per user, from the Gram matrix G = h h^H (antenna-count agnostic) as a set over users.
- det: one token per user: first-guess (LMMSE or EP) and matched-filter outputs over the slots, Gram-row set features.
- ce / cp / pf: one token per subcarrier group, a DeepSets pool over antennas; time steps padded to ``max_time``.
- bf / de / pe: one token per sub-6 subcarrier group: angular power over fixed bins, power (dB), lag-1 correlation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from icwm.config import check
from icwm.model.config import ModelConfig
from icwm.wireless import beams
from icwm.wireless.detection import ep_detect, noise_var_from_snr

PRIOR_FLOOR = -20.0     # bf: floor of the sub-6 angle-spectrum log-scores used as prior logits
GRID_KEYS = {"ce": ("h_ls", "h"), "cp": ("h_hist", "h_fut"), "pf": ("h_ul", "h_dl")}
SUB6_Y = {"bf": "beam", "de": "distance_m", "pe": "pathloss_db"}


def c2r(z: torch.Tensor) -> torch.Tensor:
    """The one complex -> real conversion: z [...] complex -> [..., 2] float (real, imag)."""
    return torch.view_as_real(z.resolve_conj()) if z.is_complex() else torch.stack((z, torch.zeros_like(z)), -1)


def sinusoid(n: int, dim: int, device: torch.device) -> torch.Tensor:
    """Fixed sinusoidal codes of the indices 0..n-1: [n, dim] float32 (defined for any n)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    inv = 10000.0 ** (-torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim)
    out = torch.zeros(n, dim, device=device)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)[:, : dim // 2]
    return out


def pad_dim(x: torch.Tensor, dim: int, size: int, front: bool = False) -> torch.Tensor:
    """Zero-pad ``x`` along ``dim`` up to ``size`` (at the front or the back)."""
    extra = size - x.shape[dim]
    if extra <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    z = x.new_zeros(shape)
    return torch.cat((z, x) if front else (x, z), dim=dim)


def mlp(d_in: int, d: int) -> nn.Sequential:
    """Two-layer SiLU MLP d_in -> d -> d."""
    return nn.Sequential(nn.Linear(d_in, d), nn.SiLU(), nn.Linear(d, d))


def gram_stats(G: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample normalised Gram features (independent of the batch).

    Args:
        G: [..., user, user] complex Gram matrix; scale: [...] SNR factor multiplying the diagonal.
    Returns:
        la: [..., user] log10(1 + scale * G_kk); rho: [..., user, user] |G_kj| / sqrt(G_kk G_jj).
    """
    dg = G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)
    la = torch.log10(1.0 + scale[..., None] * dg)
    rho = G.abs() / (dg[..., :, None] * dg[..., None, :]).sqrt()
    return la, rho


class GramSet(nn.Module):
    """Permutation-equivariant user-set embedding: token_k = mean_j phi(la_k, la_j, rho_kj, rho_kj^2, [k == j])."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.phi = mlp(5, d)

    def forward(self, la: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        """la: [..., user], rho: [..., user, user] -> [..., user, d]."""
        n = la.shape[-1]
        eye = torch.eye(n, device=la.device, dtype=la.dtype).expand(rho.shape)
        f = torch.stack((la[..., :, None].expand(rho.shape), la[..., None, :].expand(rho.shape), rho, rho * rho, eye), -1)
        w = self.phi[0].weight
        return self.phi(f.to(w.dtype)).mean(-2)


class PrecodingEmbed(nn.Module):
    """pre_sr / pre_mm: x = (h [user, ant], snr_db), y = lam_p [user, 2]; one token per user."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task = task
        self.gram = GramSet(cfg.d_model)
        self.self_lin = nn.Linear(2, cfg.d_model)
        self.y_lin = mlp(2, cfg.d_model)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """h: [B, P, K, Nt] c64, snr_db: [B, P], lam_p: [B, P, K, 2] -> x, y: [B, P, K, d]."""
        h, snr = batch["h"], batch["snr_db"].float()
        la, rho = gram_stats(h @ h.mH, torch.pow(10.0, snr / 10.0))
        dt = self.self_lin.weight.dtype
        own = torch.stack((la, (snr / 20.0)[..., None].expand(la.shape)), -1)  # [B, P, K, 2]
        x = self.gram(la, rho) + self.self_lin(own.to(dt))
        y = self.y_lin((batch["lam_p"].float() * h.shape[-2]).to(dt))
        return x, y, {}


class DetEmbed(nn.Module):
    """det: x = (h [rx, user], y [slot, rx], snr_db), y = x [slot, user]; one token per user, slots padded.

    Features per user and slot: the first guess (``det_anchor``: LMMSE, or EP, the expectation-propagation detector
    that is close to ML on small arrays) and the matched filter; the head corrects the first guess.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.max_slots, self.anchor = cfg.max_slots, cfg.det_anchor
        self.gram = GramSet(cfg.d_model)
        self.x_lin = nn.Linear(4 * cfg.max_slots + 2, cfg.d_model)
        self.y_lin = mlp(2 * cfg.max_slots, cfg.d_model)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """h: [B, P, R, K], y: [B, P, S, R], x: [B, P, S, K] c64 -> tokens [B, P, K, d]; ctx anchor = LMMSE or EP."""
        h, yr, snr = batch["h"], batch["y"], batch["snr_db"].float()
        n_user, n_slot = h.shape[-1], yr.shape[-2]
        noise = noise_var_from_snr(snr, n_user).to(snr.device)  # [B, P] per-receive-antenna SNR, unit-energy symbols
        G = h.mH @ h                                  # [B, P, K, K]
        z = yr @ h.conj()                             # [B, P, S, K] matched filter
        if self.anchor == "ep":                       # data-only first guess: no gradient through the iterations
            with torch.no_grad():
                x_first = ep_detect(h, yr, noise)[0].transpose(-1, -2)                              # [B,P,K,S]
        else:
            eye = torch.eye(n_user, device=h.device, dtype=h.dtype)
            x_first = torch.linalg.solve(G + noise[..., None, None].to(h.dtype) * eye, z.transpose(-1, -2))
        la, rho = gram_stats(G, 1.0 / noise)
        mf = z.transpose(-1, -2) / G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)[..., None]  # [B, P, K, S]
        f = pad_dim(torch.cat((c2r(x_first), c2r(mf)), -1), -2, self.max_slots)  # [B, P, K, max_slots, 4]
        own = torch.stack((la, (snr / 20.0)[..., None].expand(la.shape)), -1)     # [B, P, K, 2]
        dt = self.x_lin.weight.dtype
        x = self.x_lin(torch.cat((f.flatten(-2), own), -1).to(dt)) + self.gram(la, rho)
        yl = pad_dim(c2r(batch["x"].transpose(-1, -2)), -2, self.max_slots).flatten(-2)  # [B, P, K, 2*max_slots]
        return x, self.y_lin(yl.to(dt)), {"anchor": x_first.transpose(-1, -2), "n_slots": n_slot}


class GridEmbed(nn.Module):
    """ce / cp / pf: channel grids [time, sc, ant]; one token per subcarrier group, antennas as a set.

    Per antenna and group, features (time padded to ``max_time``) are lifted to ``d`` (``e``), and the token is a
    DeepSets pool over antennas, ``post(mean_n silu(e_n))``. The head decodes every antenna from its own ``e_n``
    plus the transformer's output for the group, so cost and parameters do not depend on the antenna count.
    """

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time, self.d = task, cfg.max_time, cfg.d_model
        self.gx = 1 if task == "ce" else cfg.sc_group
        self.gy = cfg.pilot_spacing if task == "ce" else cfg.sc_group
        self.x_in = nn.Linear(2 * cfg.max_time * self.gx + 1, cfg.d_model)
        self.y_in = nn.Linear(2 * cfg.max_time * self.gy, cfg.d_model)
        self.x_post, self.y_post = nn.Linear(cfg.d_model, cfg.d_model), nn.Linear(cfg.d_model, cfg.d_model)

    def _group(self, g: torch.Tensor, size: int, n_groups: int, front: bool) -> torch.Tensor:
        """g: [B, P, T, S, N] complex -> [B, P, n_groups, N, 2 * max_time * size] float."""
        g = pad_dim(g, 3, n_groups * size)
        g = g.unflatten(3, (n_groups, size)).permute(0, 1, 3, 5, 2, 4)  # [B, P, n_g, N, T, size]
        return pad_dim(c2r(g), -3, self.max_time, front=front).flatten(-3)

    def _anchor(self, xg: torch.Tensor, t_y: int, s_y: int) -> torch.Tensor:
        """Classical first guess [B, P, t_y, s_y, N] complex: nearest pilot (ce), last sample (cp), UL band (pf)."""
        if self.task == "ce":
            return xg.repeat_interleave(self.gy, dim=3)[:, :, :, :s_y]
        if self.task == "cp":
            return xg[:, :, -1:].expand(xg.shape[:2] + (t_y, s_y, xg.shape[-1]))
        return xg

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """x grid [B, P, Tx, Sx, N], y grid [B, P, Ty, Sy, N] c64 -> tokens [B, P, n_groups, d]."""
        kx, ky = GRID_KEYS[self.task]
        xg, yg, snr = batch[kx], batch[ky], batch["snr_db"].float()
        t_y, s_y = yg.shape[2], yg.shape[3]
        n_g = -(-xg.shape[3] // self.gx)
        fx = self._group(xg, self.gx, n_g, front=self.task == "cp")         # [B, P, n_g, N, Fx]
        fx = torch.cat((fx, (snr / 20.0)[:, :, None, None, None].expand(fx.shape[:4] + (1,))), -1)
        dt = self.x_in.weight.dtype
        pos = sinusoid(n_g, self.d, xg.device).to(dt)                        # [n_g, d]
        e_x = self.x_in(fx.to(dt))                                           # [B, P, n_g, N, d]
        x = self.x_post(F.silu(e_x).mean(3)) + pos
        e_y = self.y_in(self._group(yg, self.gy, n_g, False).to(dt))
        y = self.y_post(F.silu(e_y).mean(3)) + pos
        return x, y, {"anchor": self._anchor(xg, t_y, s_y), "e_x": e_x, "e_y": e_y, "x": xg, "y": yg, "snr_db": snr,
                      "t_y": t_y, "s_y": s_y}


def sub6_to_z(task: str, value: torch.Tensor) -> torch.Tensor:
    """de / pe labels in the model's regression space: ``log(d / 100 m)``, ``(PL - 100 dB) / 20``."""
    if task == "de":
        return torch.log(value.clamp_min(1e-3) / 100.0)
    return (value - 100.0) / 20.0


def sub6_from_z(task: str, z: torch.Tensor) -> torch.Tensor:
    """Inverse of ``sub6_to_z`` (de clamped to 100 m * e^[-8, 8])."""
    if task == "de":
        return 100.0 * torch.exp(z.clamp(-8.0, 8.0))
    return 100.0 + 20.0 * z


class Sub6Embed(nn.Module):
    """bf / de / pe: x = h_sub6 [sc6, ant6]; one token per subcarrier group; a single y-token."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.group, self.bins, self.d = task, cfg.sub6_group, cfg.n_ang_bins, cfg.d_model
        self.n_beams, self.prior = cfg.n_beams, cfg.demo_fit and task == "bf"   # bf prior: only its head reads it
        self.x_lin = mlp(cfg.n_ang_bins + 3, cfg.d_model)
        self.y_emb = nn.Embedding(cfg.n_beams, cfg.d_model) if task == "bf" else nn.Linear(1, cfg.d_model)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """h: [B, P, S, A] complex -> [B, P, n_groups, n_ang_bins + 3] float32 (angular power, dB/20, lag-1 corr)."""
        s, a = h.shape[-2:]
        n_g = -(-s // self.group)
        u = -1.0 + (2 * torch.arange(self.bins, device=h.device) + 1.0) / self.bins          # [bins] sin(angle)
        steer = torch.exp(1j * math.pi * torch.arange(a, device=h.device)[:, None] * u[None, :]) / math.sqrt(a)
        c = (h @ steer.conj().to(h.dtype)).abs().pow(2)                                       # [B, P, S, bins]
        pw = h.abs().pow(2).sum(-1)                                                           # [B, P, S]
        lag = pad_dim((h[..., 1:, :] * h[..., :-1, :].conj()).sum(-1), -1, s)                 # [B, P, S]
        grp = lambda t: pad_dim(t, 2, n_g * self.group).unflatten(2, (n_g, self.group)).sum(3)  # noqa: E731
        cnt = grp(torch.ones_like(pw)) * a
        pw_g, ang_g, lag_g = grp(pw), grp(c), grp(lag)
        db = 10.0 * torch.log10(pw_g / cnt + 1e-30) / 20.0
        ang = ang_g / ang_g.sum(-1, keepdim=True).clamp_min(1e-30)
        return torch.cat((ang, db[..., None], c2r(lag_g / pw_g.clamp_min(1e-30))), -1)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """h_sub6: [B, P, S, A] c64 -> x [B, P, n_groups, d], y [B, P, 1, d]."""
        f = self.features(batch["h_sub6"])
        dt = self.x_lin[0].weight.dtype
        x = self.x_lin(f.to(dt)) + sinusoid(f.shape[2], self.d, f.device).to(dt)
        lab = batch[SUB6_Y[self.task]]
        ctx = {"power": f[..., self.bins].mean(-1)}                                          # [B, P] mean dB / 20
        if self.task == "bf":
            ctx["label"] = lab.long()
            y = self.y_emb(ctx["label"])
            if self.prior:
                ctx["prior"] = beams.sub6_beam_scores(batch["h_sub6"], self.n_beams).clamp_min(PRIOR_FLOOR)
        else:
            ctx["label"] = sub6_to_z(self.task, lab.float())
            y = self.y_emb(ctx["label"][..., None].to(dt))
        return x, y[:, :, None], ctx


def build_embedder(cfg: ModelConfig, task: str) -> nn.Module:
    """The task's embedder (the one place task ids map to token families)."""
    if task in ("pre_sr", "pre_mm"):
        return PrecodingEmbed(cfg, task)
    if task == "det":
        return DetEmbed(cfg)
    if task in GRID_KEYS:
        return GridEmbed(cfg, task)
    check(task in SUB6_Y, "task", "a known task id", task)
    return Sub6Embed(cfg, task)
