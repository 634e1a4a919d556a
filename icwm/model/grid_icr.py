"""ce / cp / pf add-on: the in-context ridge regression (``icr.py``) of what the head still misses.

Pair p's residuals ``label - b`` of the pairs before it (``b``: the head's prediction without this add-on) are
regressed on the classical regressors of the task and on ``b`` itself (so the demonstrations decide how much of the
network's prediction to keep); pair p gets ``b + fit``. With many demonstrations of a link the prediction tends to
the link's empirical Wiener filter (what LMMSE / AR / band-map estimators compute from statistics).

- ce: regressors = the ``2 cfg.icr_half_width + 1`` pilots around a group's pilot; units = pilot groups,
  samples = antennas (frequency correlation is stationary across the band).
- cp: regressors = the history of a beam (unitary DFT over antennas); units = beams, samples = subcarriers (a
  beam sees few paths, so its own temporal predictor is sharper than one shared by all antennas).
- pf: regressors = the UL coefficients at delays ``d - w .. d + w`` (``w = cfg.icr_band_half_width``, circular)
  of the same beam in the delay x beam domain; units = (delay, beam), samples = time slots.
"""
from __future__ import annotations

import torch
from torch import nn

from icwm.model.common import pad_dim
from icwm.model.config import ModelConfig
from icwm.model.icr import InContextRidge
from icwm.wireless.duplex import delay_taps, from_delay_beam, to_delay_beam


def pilot_window(x: torch.Tensor, half: int, n_g: int) -> torch.Tensor:
    """ce input [B, P, 1, pilots, N] -> [B, P, G, N, 2 half + 1]: pilots g - half .. g + half (zero padded)."""
    xp = torch.nn.functional.pad(x[:, :, 0].transpose(-1, -2), (half, half))       # [B, P, N, pilots + 2 half]
    return xp.unfold(-1, 2 * half + 1, 1)[:, :, :, :n_g].transpose(2, 3)


def grid_to_groups(y: torch.Tensor, n_g: int, group: int) -> torch.Tensor:
    """ce: a grid [B, P, 1, S, N] -> [B, P, G, N, group] (zero padded to n_g groups)."""
    y = pad_dim(y, 3, n_g * group).unflatten(3, (n_g, group))                       # [B, P, 1, G, g, N]
    return y[:, :, 0].permute(0, 1, 2, 4, 3)


def groups_to_grid(o: torch.Tensor, s_y: int) -> torch.Tensor:
    """Inverse of ``grid_to_groups``: [B, P, G, N, group] -> [B, P, 1, s_y, N]."""
    b, p, n_g, n, g = o.shape
    return o.permute(0, 1, 2, 4, 3).reshape(b, p, 1, n_g * g, n)[:, :, :, :s_y]


class GridFit(nn.Module):
    """The in-context correction of a grid prediction (see the module doc for each task's regressors)."""

    def __init__(self, cfg: ModelConfig, task: str) -> None:
        super().__init__()
        self.task, self.max_time = task, cfg.max_time
        self.half = cfg.icr_half_width if task == "ce" else cfg.icr_band_half_width
        self.group = cfg.pilot_spacing
        self.icr = InContextRidge(cfg, residual=task in cfg.icr_residual_ridge)

    def forward(self, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """x input grid [B, P, Tx, Sx, N], y labels and b prediction [B, P, Ty, Sy, N] (c64) -> correction like b.

        Pair p's correction reads the labels of pairs < p only.
        """
        if self.task == "ce":
            n_g = x.shape[3]
            b_s = grid_to_groups(b, n_g, self.group)                                # [B, P, G, N, g]
            reg = torch.cat((pilot_window(x, self.half, n_g), b_s), -1)
            return groups_to_grid(self.icr(reg, grid_to_groups(y, n_g, self.group) - b_s), b.shape[3])
        if self.task == "cp":
            beam = lambda g: torch.fft.fft(g, dim=-1, norm="ortho").permute(0, 1, 4, 3, 2)  # noqa: E731 [B,P,N,S,T]
            hist = pad_dim(x, 2, self.max_time, front=True)
            b_b = beam(b)
            corr = self.icr(torch.cat((beam(hist), b_b), -1), beam(y) - b_b)          # [B, P, N, S, Ty]
            return torch.fft.ifft(corr.permute(0, 1, 4, 3, 2), dim=-1, norm="ortho")
        b_t = to_delay_beam(b)                                                       # pf: [B, P, T, D, N]
        reg = torch.cat((delay_taps(to_delay_beam(x), self.half), b_t[..., None]), -1)   # [B, P, T, D, N, F]
        reg = reg.permute(0, 1, 3, 4, 2, 5).flatten(2, 3)                            # [B, P, D N, T, F]
        resid = (to_delay_beam(y) - b_t).permute(0, 1, 3, 4, 2).flatten(2, 3)[..., None]
        corr = self.icr(reg, resid)[..., 0]                                          # [B, P, D N, T]
        return from_delay_beam(corr.unflatten(2, b.shape[-2:]).permute(0, 1, 4, 2, 3))
