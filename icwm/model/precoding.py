"""pre_sr / pre_mm: sum-rate and max-min SINR precoding, one token per user.

Learned: the user-set embedding of the channel's Gram matrix, the (lambda, p) read-out per user and, in the latent
form, what the SNR is (from the demonstrations, through the trunk; the latent probe in ``icwm.py`` reads it out).
Closed form: the Gram features (antenna-count agnostic). No first guess and no in-context fit: the head's softmax
over users is the whole prediction (the metric renders ``lam_p`` into the precoder, ``icwm.tasks.precoding_common``).

Head = learned read-out; add-ons: in the latent form, ``snr_db`` = the latent probe's estimate, which is the SNR the
metric designs the precoder at.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from icwm.model.common import GramSet, gram_stats, mlp, scalar_feature
from icwm.model.config import ModelConfig

LIMITS = [("h", -2, "max_users"), ("h", -1, "max_ant")]   # (key, dim from the end, ModelConfig limit)
SNR_SCALE = 20.0                                          # dB per feature unit
N_OWN = 4                                                 # per-user features: la, log gain, snr, snr missing


@dataclass
class PrecodingCtx:
    """What the head needs besides the tokens: whether the SNR is an input (False in the latent form)."""

    snr_given: bool


class PrecodingEmbed(nn.Module):
    """x = (h [user, ant], snr_db or missing), y = lam_p [user, 2]; one token per user."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gram = GramSet(N_OWN, cfg.d_model)
        self.y_lin = mlp(2, cfg.d_model)
        self.label_reads_x = cfg.label_reads_x

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
        dt = x.dtype
        y = self.y_lin((batch["lam_p"].float() * h.shape[-2]).to(dt))
        return x, (y + x if self.label_reads_x else y), PrecodingCtx(snr_given="snr_db" in batch)


class PrecodingHead(nn.Module):
    """Per-user token -> (lambda, p) logits, softmax over users (each column sums to 1)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.d_model, 2)

    def forward(self, hx: torch.Tensor, ctx: PrecodingCtx, latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hx: [B, P, K, d] -> {"lam_p": [B, P, K, 2] float32} (latent form: also "snr_db" [B, P])."""
        out = {"lam_p": torch.softmax(self.out(hx).float(), dim=-2)}
        if not ctx.snr_given:
            out["snr_db"] = latent["snr_db"]
        return out
