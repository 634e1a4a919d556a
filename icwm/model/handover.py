"""ce: hand the in-context estimate over to frequency-domain LMMSE as demonstrations accumulate.

With many demonstrations of the same link, the sample frequency covariance of their channels makes the classical
LMMSE interpolator (``icwm.wireless.estimation.lmmse_matrix``) the better estimator; with few it is poor (one demo:
-9.6 dB where the head gives -11.8 dB, seen link family). The gate's two constants are calibrated on the seen link
family only, by ``launch/calibrate_handover.py`` (``icwm.eval.handover_gate``: blends ``(1 - g) head + g LMMSE`` at
fixed g, 96 episodes per seen link system from seeds the evaluation does not use, icwm-small v8): best g 0.125 at
j = 1, 0.375 at 2, 0.5 at 4, 0.75 at 8, 0.75-0.875 at 16; fitted a = -1.5, b = 1.25 (summed over j = 1..16: -210.30 dB
vs -209.02 dB with the first, hand-set a = -4, b = 1.84, which had been read off a measurement that included the
unseen family).
"""
from __future__ import annotations

import torch
from torch import nn

from icwm.model.fit import exclusive_cumsum
from icwm.wireless.estimation import lmmse_matrix

# gate g(j) = sigmoid(a + b log j) for j earlier pairs: 0.18, 0.35, 0.56, 0.75, 0.88 at j = 1, 2, 4, 8, 16 (module doc)
HANDOVER_INIT = (-1.5, 1.25)


class LmmseHandover(nn.Module):
    """Blend of the head's ce estimate with the LMMSE estimate from the earlier pairs' channel covariance."""

    def __init__(self, pilot_spacing: int) -> None:
        super().__init__()
        self.spacing = pilot_spacing
        self.gate_a = nn.Parameter(torch.full((1,), HANDOVER_INIT[0]))
        self.gate_b = nn.Parameter(torch.full((1,), HANDOVER_INIT[1]))

    def gate(self, p: int, device: torch.device) -> torch.Tensor:
        """Weight of LMMSE at each pair: [P], 0 at pair 0 (no earlier pair)."""
        j = torch.arange(p, device=device, dtype=torch.float32)
        g = torch.sigmoid(self.gate_a + self.gate_b * torch.log(j.clamp_min(1.0)))
        return torch.where(j > 0, g, torch.zeros_like(g))

    def lmmse(self, h_ls: torch.Tensor, h: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """h_ls [B, P, T, pilots, N], h [B, P, T, S, N] labels, snr_db [B, P] -> [B, P, T, S, N]: pair p's LMMSE
        estimate with the sample covariance of pairs < p (their time x antenna samples; zero at pair 0)."""
        b, p, t, s, n = h.shape
        x = h.movedim(-1, -2).reshape(b, p, t * n, s)                                   # [B, P, samples, S]
        outer = exclusive_cumsum(x.transpose(-1, -2) @ x.conj())                        # [B, P, S, S]
        count = torch.arange(p, device=h.device).clamp_min(1) * (t * n)
        cov = outer / count[None, :, None, None]
        pilots = torch.arange(0, s, self.spacing, device=h.device)
        w = lmmse_matrix(pilots, cov, torch.pow(10.0, -snr_db.float() / 10.0))          # [B, P, S, pilots]
        return w[:, :, None] @ h_ls                                                     # [B, P, T, S, N]

    def forward(self, h_ls: torch.Tensor, h: torch.Tensor, snr_db: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out + g(p) (LMMSE_p - out)``: out [B, P, T, S, N] complex -> same."""
        g = self.gate(out.shape[1], out.device).to(out.real.dtype)[None, :, None, None, None]
        return out + g * (self.lmmse(h_ls, h, snr_db).to(out.dtype) - out)


__all__ = ["HANDOVER_INIT", "LmmseHandover"]
