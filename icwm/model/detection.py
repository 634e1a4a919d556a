"""det: MIMO detection of 16-QAM symbol vectors, one token per user, slots padded to ``max_slots``.

Learned: the per-user tokens (first guess, matched filter and Gram-row features over the slots) and the head's
correction of the first guess; in the latent form (no channel, no SNR: x = the received slots only) everything the
demonstrations say about the channel beyond the linear fit below, through the trunk.
Closed form: the first guess. Given form: expectation propagation (EP, close to ML on small arrays) with the given
channel and SNR. Latent form, the in-context ridge regression (``icr.py``) on the samples of pairs < p (zero at
k = 0 or without ``cfg.icr``): with ``cfg.det_fit == "channel"`` of the received samples on the symbols, i.e. the
block's channel, then EP at that channel with the fit's residual power as the noise (the given form's detector,
fed from the demonstrations; the matched filter is the fitted channel's; with ``cfg.det_fit_grad`` the fit's ridge
gets the loss's gradient through LMMSE at the same channel, EP having none); with ``"equaliser"`` (v12) of the symbols
on the received samples (its limit is the LMMSE equaliser of the block).

Head = first guess + learned correction per user and slot; no add-ons.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from icwm.model.common import GramSet, c2r, gram_stats, mlp, pad_dim, scalar_feature
from icwm.model.config import ModelConfig
from icwm.model.icr import InContextRidge, prefix_residual_power
from icwm.wireless.detection import ep_detect, lmmse_detect, noise_var_from_snr

LIMITS = [("x", -1, "max_users"), ("y", -1, "max_ant"), ("y", -2, "max_slots")]
SNR_SCALE = 20.0                     # dB per feature unit
N_GRAM_OWN = 3                       # Gram-set per-user features: la, snr, snr missing
NOISE_FLOOR = 1e-6                   # channel fit: least noise variance EP runs with (60 dB below unit symbol power)


@dataclass
class DetCtx:
    """First guess [B, P, slot, K] complex and the number of real slots (the head's outputs are padded)."""

    anchor: torch.Tensor
    n_slots: int


class DetEmbed(nn.Module):
    """x = (h [rx, user] or missing, y [slot, rx], snr_db or missing), y = x [slot, user]; one token per user."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.max_slots = cfg.max_slots
        self.gram = GramSet(N_GRAM_OWN, cfg.d_model)
        self.no_h = nn.Parameter(torch.zeros(cfg.d_model))      # the missing channel's embedding
        self.x_lin = nn.Linear(4 * cfg.max_slots + 4, cfg.d_model)
        self.y_lin = mlp(2 * cfg.max_slots, cfg.d_model)
        self.label_reads_x = cfg.label_reads_x
        self.icr = InContextRidge(cfg) if cfg.icr else None
        self.fit_channel = cfg.det_fit == "channel"
        self.fit_grad = cfg.det_fit_grad

    def fits_in_context(self, batch: dict) -> bool:
        """Whether ``first_guess`` is the in-context fit for ``batch`` (then a pair's tokens read the pairs before it;
        otherwise they read that pair alone). Used by ``icwm.model.cache``; mirrors ``first_guess``."""
        return self.icr is not None and not ("h" in batch and "snr_db" in batch)

    def first_guess(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """EP with the given channel and SNR, else the in-context fit (zeros without it): x0 [B, P, slot, K] complex,
        and the channel the fit estimated (``det_fit == "channel"``) [B, P, R, K] or None."""
        yr, labels = batch["y"], batch["x"]
        if "h" in batch and "snr_db" in batch:
            noise = noise_var_from_snr(batch["snr_db"].float(), labels.shape[-1]).to(yr.device)
            with torch.no_grad():                         # data-only first guess: no gradient through the iterations
                return ep_detect(batch["h"], yr, noise)[0], None
        if self.icr is None:
            return torch.zeros_like(labels), None
        y_u, x_u = yr[:, :, None].to(torch.complex64), labels[:, :, None].to(torch.complex64)   # [B, P, U 1, S, .]
        if not self.fit_channel:
            return self.icr(y_u, x_u)[:, :, 0], None
        maps = self.icr.maps(x_u, y_u, own_power=False)                         # [B, P, 1, R, K]: the channel
        noise = prefix_residual_power(x_u, y_u, maps)[:, :, 0]                  # [B, P]
        h_hat = maps[:, :, 0]
        noise = noise.clamp_min(NOISE_FLOOR)
        with torch.no_grad():                             # as the given form: no gradient through the iterations
            x0 = ep_detect(h_hat, yr, noise)[0]
        if self.fit_grad and torch.is_grad_enabled():     # EP's value, LMMSE's slope w.r.t. the fit
            lin = lmmse_detect(h_hat, yr, noise, unbiased=False)[0]
            x0 = x0 + (lin - lin.detach())
        has_demos = (torch.arange(yr.shape[1], device=yr.device) > 0)[None, :, None, None]
        return torch.where(has_demos, x0.to(labels.dtype), torch.zeros_like(labels)), h_hat

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, DetCtx]:
        """y: [B, P, S, R], x: [B, P, S, K], h: [B, P, R, K] (optional) c64 -> tokens [B, P, K, d]."""
        yr, labels = batch["y"], batch["x"]
        n_slot = yr.shape[-2]
        snr = scalar_feature(batch, "snr_db", SNR_SCALE, yr)                       # [B, P, 2]
        anchor, h_hat = self.first_guess(batch)                                     # [B, P, S, K]
        b, p, k = labels.shape[0], labels.shape[1], labels.shape[-1]
        snr_u = snr[:, :, None, :].expand(b, p, k, 2)
        if "h" in batch:
            h = batch["h"]
            G = h.mH @ h                                                            # [B, P, K, K]
            gain = torch.pow(10.0, SNR_SCALE * snr[..., 0] / 10.0) / k * (1.0 - snr[..., 1])
            la, rho = gram_stats(G, gain)
            mf = (yr @ h.conj()).transpose(-1, -2) / G.diagonal(dim1=-2, dim2=-1).real.clamp_min(1e-12)[..., None]
            e_h = self.gram(torch.cat((la[..., None], snr_u), -1), rho)
            own = torch.cat((la[..., None], snr_u, torch.zeros_like(la)[..., None]), -1)
        else:                                       # the channel is missing; with det_fit "channel" the matched
            if h_hat is None:                       # filter is the fitted channel's
                mf = torch.zeros_like(anchor.transpose(-1, -2))
            else:
                mf = (yr @ h_hat.conj()).transpose(-1, -2) / h_hat.abs().pow(2).sum(-2).clamp_min(1e-12)[..., None]
            e_h = self.no_h
            own = torch.cat((torch.zeros(b, p, k, 1, device=yr.device), snr_u,
                             torch.ones(b, p, k, 1, device=yr.device)), -1)
        f = pad_dim(torch.cat((c2r(anchor.transpose(-1, -2)), c2r(mf)), -1), -2, self.max_slots)  # [B,P,K,slots,4]
        dt = self.x_lin.weight.dtype
        x = self.x_lin(torch.cat((f.flatten(-2), own), -1).to(dt)) + e_h
        yl = pad_dim(c2r(labels.transpose(-1, -2)), -2, self.max_slots).flatten(-2)   # [B, P, K, 2 max_slots]
        y = self.y_lin(yl.to(dt))
        return x, (y + x if self.label_reads_x else y), DetCtx(anchor=anchor, n_slots=n_slot)


class DetHead(nn.Module):
    """Per-user token -> symbol corrections over the (padded) slots, added to the first guess."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.max_slots = cfg.max_slots
        self.out = nn.Linear(cfg.d_model, 2 * cfg.max_slots)

    def forward(self, hx: torch.Tensor, ctx: DetCtx, latent: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hx: [B, P, K, d] -> {"x": [B, P, slot, K] complex64}."""
        o = self.out(hx).float().unflatten(-1, (self.max_slots, 2))[..., : ctx.n_slots, :]  # [B, P, K, S, 2]
        corr = torch.view_as_complex(o.contiguous()).transpose(-1, -2)                    # [B, P, S, K]
        return {"x": ctx.anchor.to(torch.complex64) + corr}
