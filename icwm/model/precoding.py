"""pre_sr / pre_mm: sum-rate and max-min SINR precoding, one token per user.

Learned: the user-set embedding of the channel's Gram matrix, the (lambda, p) read-out per user and, in the latent
form, what the SNR is (from the demonstrations, through the trunk; the latent probe in ``icwm.py`` reads it out),
with ``model.nominal`` as an offset from the episode's stated nominal SNR (an embedding on the user tokens).
Closed form: the Gram features (antenna-count agnostic). No first guess and no in-context fit: the head's softmax
over users is the read-out (the metric renders ``lam_p`` into the precoder, ``icwm.tasks.precoding_common``).

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

LIMITS = [("h", -2, "max_users"), ("h", -1, "max_ant")]   # (key, dim from the end, ModelConfig limit)
SNR_SCALE = 20.0                                          # dB per feature unit
N_OWN = 4                                                 # per-user features: la, log gain, snr, snr missing


@dataclass
class PrecodingCtx:
    """What the head needs besides the tokens: the channels ``h`` [B, P, K, Nt] and the given SNR ``snr_db`` [B, P]
    (None in the latent form)."""

    h: torch.Tensor
    snr_db: torch.Tensor | None

    @property
    def snr_given(self) -> bool:
        return self.snr_db is not None


class PrecodingEmbed(nn.Module):
    """x = (h [user, ant], snr_db or missing), y = lam_p [user, 2]; one token per user."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gram = GramSet(N_OWN, cfg.d_model)
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
        x = self.gram(own, rho)
        if self.nominal is not None:
            x = x + self.nominal(batch, h)
        dt = x.dtype
        y = self.y_lin((batch["lam_p"].float() * h.shape[-2]).to(dt))
        return x, (y + x if self.label_reads_x else y), PrecodingCtx(h, batch.get("snr_db"))


class PrecodingHead(nn.Module):
    """Per-user token -> (lambda, p) logits, softmax over users (each column sums to 1); refined at inference."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.d_model, 2)
        self.task, self.refine = task, cfg.precoding_refine

    def forward(self, hx: torch.Tensor, ctx: PrecodingCtx, latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hx: [B, P, K, d] -> {"lam_p": [B, P, K, 2] float32} (latent form: also "snr_db" [B, P])."""
        lam_p = torch.softmax(self.out(hx).float(), dim=-2)
        snr_db = ctx.snr_db if ctx.snr_given else latent["snr_db"]
        if self.refine and not self.training:
            with torch.no_grad():
                lam_p = tasks.get(self.task).refine(ctx.h, lam_p, torch.pow(10.0, snr_db.float() / 10.0))
        return {"lam_p": lam_p} if ctx.snr_given else {"lam_p": lam_p, "snr_db": snr_db}
