"""pre_sr / pre_mm: sum-rate and max-min SINR precoding, one token per user.

Learned: the user-set embedding of the channel's Gram matrix, the (lambda, p) read-out per user and, in the latent
form, what the SNR is (from the demonstrations, through the trunk; the latent probe in ``icwm.py`` reads it out),
with ``model.nominal`` as an offset from the episode's stated nominal SNR (an embedding on the user tokens).
Closed form: the Gram features (antenna-count agnostic) and, with ``model.precoding_fit`` (and ``model.icr``), the
in-context ridge (``icr.py``) of each user's log label ``log(K lam_p)`` on ``[1, log gain, log orthogonality]`` of
its channel (centred over the pair's users), fitted to the earlier pairs. How a solver shares power between strong
and weak, orthogonal and crowded users is what the SNR changes (at low SNR towards the strong users, at high SNR
towards zero-forcing's equal SINRs), so the fitted map summarises the demonstrations in a few numbers the trunk
can read the SNR from; the map (an embedding on every user token) and each user's fitted label (a per-user
feature) are inputs, nothing reads an SNR off them in closed form (with ``model.probe_fit`` the latent probe also
reads the map's raw numbers and, with ``model.probe_levels``, the pair's channel levels, which the centring
removes). No first guess: the head's softmax over users is the read-out (the metric renders ``lam_p`` into the
precoder, ``icwm.tasks.precoding_common``).

Head = learned read-out; add-ons: in the latent form, ``snr_db`` = the latent probe's estimate, which is the SNR the
metric designs the precoder at; at inference with ``model.precoding_refine`` (default), the read-out is taken to the
label's own solver at that SNR (the given one in the given form): WMMSE from the read-out's precoder for pre_sr, the
max-min optimum for pre_mm (``refine`` in the task modules). The network's part is then the SNR it infers from the
demonstrations; training always scores the read-out alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from icwm import tasks
from icwm.model.common import GramSet, NominalEmbed, gram_stats, mlp, scalar_feature
from icwm.model.config import ModelConfig
from icwm.model.icr import InContextRidge

LIMITS = [("h", -2, "max_users"), ("h", -1, "max_ant")]   # (key, dim from the end, ModelConfig limit)
SNR_SCALE = 20.0                                          # dB per feature unit
N_OWN = 4                                                 # per-user features: la, log gain, snr, snr missing
N_FIT = 3                                                 # fit regressors: 1, log gain, log orthogonality
N_MAP = 2 * N_FIT + 2                                     # the fitted map [2 x N_FIT], 1 / max(j, 1), [j > 0]
N_LEVELS = 3                                              # model.probe_levels: mean log gain, mean log orth, K / Nt
LABEL_FLOOR = 1e-2    # a user the solver switches off (lambda or p = 0) enters the fit as 1 % of an equal share
LOADING = 1e-2        # diagonal loading of the users' correlation matrix: a user in the span of the others (K >= Nt)
                      # reads a log orthogonality near log(LOADING) instead of -inf


@dataclass
class PrecodingCtx:
    """What the head needs besides the tokens: the channels ``h`` [B, P, K, Nt] and the given SNR ``snr_db`` [B, P]
    (None in the latent form); for the latent probe (``model.probe_fit``), the in-context fit's raw map
    ``probe_in`` [B, P, N_MAP] float32, with ``model.probe_levels`` [B, P, N_MAP + N_LEVELS] (None without the fit
    or with ``probe_fit = "none"``)."""

    h: torch.Tensor
    snr_db: torch.Tensor | None
    probe_in: torch.Tensor | None = None

    @property
    def snr_given(self) -> bool:
        return self.snr_db is not None


def fit_targets(lam_p: torch.Tensor) -> torch.Tensor:
    """Targets of the in-context fit: lam_p [..., user, 2] -> ``log(K lam_p)`` floored at ``log(LABEL_FLOOR)``."""
    return torch.log((lam_p.float() * lam_p.shape[-2]).clamp_min(LABEL_FLOOR))


def log_gain_orth(G: torch.Tensor) -> torch.Tensor:
    """Per-user channel features, G [..., user, user] complex Gram -> [..., user, 2] float32, ``[log gain, log
    orthogonality]``. Orthogonality is ``1 / [(R + LOADING I)^-1]_kk`` with R the normalised Gram matrix: the fraction
    of user k's channel outside the other users' span (zero-forcing's gain over the user's own)."""
    dg = G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)
    R = G / (dg[..., :, None] * dg[..., None, :]).sqrt()
    eye = torch.eye(G.shape[-1], device=G.device, dtype=G.dtype)
    orth = 1.0 / torch.linalg.inv(R + LOADING * eye).diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)
    return torch.stack((torch.log(dg), torch.log(orth)), -1).float()


def fit_regressors(G: torch.Tensor) -> torch.Tensor:
    """Per-user regressors of the in-context fit: G [..., user, user] complex Gram -> [..., user, N_FIT] float32,
    ``[1, log gain, log orthogonality]``, the last two centred over the users (``centred_regressors``)."""
    return centred_regressors(log_gain_orth(G))


def centred_regressors(f: torch.Tensor) -> torch.Tensor:
    """``log_gain_orth`` f [..., user, 2] -> the fit's regressors [..., user, N_FIT]: a 1, then f centred over users."""
    f = f - f.mean(-2, keepdim=True)
    return torch.cat((torch.ones_like(f[..., :1]), f), -1)


def channel_levels(f: torch.Tensor, n_ant: int) -> torch.Tensor:
    """What the fit's centred regressors remove, per pair: ``log_gain_orth`` f [B, P, user, 2] -> [B, P, N_LEVELS]
    float32, the users' mean log gain and mean log orthogonality and K / Nt (how crowded the system is)."""
    ratio = torch.full_like(f[..., 0, :1], f.shape[-2] / n_ant)
    return torch.cat((f.mean(-2), ratio), -1)


class PrecodingFit(nn.Module):
    """The in-context fit of log labels on channel regressors (module doc), as inputs to the tokens."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.icr = InContextRidge(cfg)
        self.emb = mlp(N_MAP, cfg.d_model)
        nn.init.zeros_(self.emb[-1].weight)             # untrained: the tokens are the Gram embedding's alone
        nn.init.zeros_(self.emb[-1].bias)

    def forward(self, G: torch.Tensor, lam_p: torch.Tensor,
                n_ant: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """G [B, P, K, K] complex, lam_p [B, P, K, 2] -> (each user's fitted log label [B, P, K, 2] float32, the
        map's embedding [B, P, 1, d], the map itself [B, P, N_MAP] float32, followed by ``channel_levels``
        [B, P, N_LEVELS] when ``n_ant`` (Nt) is given); pair p's map from pairs < p (zeros at pair 0: no fit, flag 0),
        its levels from its own channel."""
        f = log_gain_orth(G)
        reg = centred_regressors(f)                                              # [B, P, K, F]
        maps = self.icr.maps(reg[:, :, None], fit_targets(lam_p)[:, :, None])[:, :, 0]      # [B, P, 2, F]
        fitted = torch.einsum("bpof,bpkf->bpko", maps, reg)
        j = torch.arange(G.shape[1], device=G.device, dtype=torch.float32)
        count = torch.stack((1.0 / j.clamp_min(1.0), (j > 0).float()), -1).expand(G.shape[:2] + (2,))
        raw = torch.cat((maps.flatten(-2), count), -1)
        summary = self.emb(raw.to(self.emb[0].weight.dtype))[:, :, None]
        if n_ant is not None:
            raw = torch.cat((raw, channel_levels(f, n_ant)), -1)
        return fitted, summary, raw


class PrecodingEmbed(nn.Module):
    """x = (h [user, ant], snr_db or missing), y = lam_p [user, 2]; one token per user."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fit = PrecodingFit(cfg) if cfg.icr and cfg.precoding_fit else None
        self.probe_levels = cfg.probe_levels
        probed = self.fit is not None and cfg.probe_fit != "none"
        self.probe_features = (N_MAP + N_LEVELS * cfg.probe_levels) if probed else 0      # for ICWM.probe
        self.gram = GramSet(N_OWN + (2 if self.fit is not None else 0), cfg.d_model)
        self.y_lin = mlp(2, cfg.d_model)
        self.label_reads_x = cfg.label_reads_x
        self.nominal = NominalEmbed(("snr_db",), cfg.d_model) if cfg.nominal else None

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, PrecodingCtx]:
        """h: [B, P, K, Nt] c64, snr_db: [B, P] (optional), lam_p: [B, P, K, 2] -> x, y: [B, P, K, d]."""
        h = batch["h"]
        snr = scalar_feature(batch, "snr_db", SNR_SCALE, h)                    # [B, P, 2]
        G = h @ h.mH
        gain = torch.pow(10.0, SNR_SCALE * snr[..., 0] / 10.0) * (1.0 - snr[..., 1])   # linear SNR, 0 when missing
        la, rho = gram_stats(G, gain)
        log_g = torch.log10(G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)) / 2.0
        own = torch.cat((la[..., None], log_g[..., None], snr[:, :, None, :].expand(la.shape + (2,))), -1)
        raw = None
        if self.fit is not None:
            fitted, summary, raw = self.fit(G, batch["lam_p"], h.shape[-1] if self.probe_levels else None)
            own = torch.cat((own, fitted), -1)
        x = self.gram(own, rho)
        if self.fit is not None:
            x = x + summary
        if self.nominal is not None:
            x = x + self.nominal(batch, h)
        dt = x.dtype
        y = self.y_lin((batch["lam_p"].float() * h.shape[-2]).to(dt))
        ctx = PrecodingCtx(h, batch.get("snr_db"), raw if self.probe_features else None)
        return x, (y + x if self.label_reads_x else y), ctx


class PrecodingHead(nn.Module):
    """Per-user token -> (lambda, p) logits, softmax over users (each column sums to 1); refined at inference."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.d_model, 2)
        self.task, self.refine, self.snr_grad = task, cfg.precoding_refine, cfg.precoding_snr_grad

    def forward(self, hx: torch.Tensor, ctx: PrecodingCtx, latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hx: [B, P, K, d] -> {"lam_p": [B, P, K, 2] float32} (latent form: also "snr_db" [B, P])."""
        lam_p = torch.softmax(self.out(hx).float(), dim=-2)
        snr_db = ctx.snr_db if ctx.snr_given else latent["snr_db"] if self.snr_grad else latent["snr_db"].detach()
        if self.refine and not self.training:
            with torch.no_grad():
                lam_p = tasks.get(self.task).refine(ctx.h, lam_p, torch.pow(10.0, snr_db.float() / 10.0))
        return {"lam_p": lam_p} if ctx.snr_given else {"lam_p": lam_p, "snr_db": snr_db}
