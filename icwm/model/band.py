"""pf: the in-context uplink -> downlink band map, fitted per (delay bin, beam) to the earlier pairs of the link.

The structure is the classical one of ``icwm.wireless.duplex`` (a DL coefficient in the delay x beam domain is
close to a linear function of the UL coefficients at and next to its bin, with weights set by the link's geometry).
The geometry is the configuration-specific part no network can know in advance, and the demonstrations (the same
link at other times, other small-scale phases) are exactly what identifies it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from icwm.config import check
from icwm.model.fit import ridge_prior, unit_ridge
from icwm.wireless.duplex import delay_taps, from_delay_beam, to_delay_beam

BAND_HALF_WIDTH = 1      # delay bins on each side of a bin among its regressors
# initial ridge n0 (samples at the bin's power), its extra log-weight at one earlier pair (``fit.ridge_prior``) and
# weight of the stats pooled over bins; set from a sweep of the fit alone on the link families (seen k = 1 / 16:
# -0.8 / -4.4 dB at n0 = 0.3, -1.3 / -4.4 dB at n0 = 1).
BAND_FIT_INIT = (0.5, 1.0, 0.01)


class BandMap(nn.Module):
    """In-context correction of a DL prediction ``b`` from the UL band (ridge fit per delay bin and beam).

    Pair p's residuals ``label - b`` of the pairs before it are regressed, per (delay, beam) unit, on the UL
    coefficients at delays ``d - BAND_HALF_WIDTH .. d + BAND_HALF_WIDTH`` (circular) of the same beam and on ``b``
    itself (so the demonstrations decide how much of the network's prediction to keep); samples are the pairs'
    time slots. Pair 0 gets no correction; with many pairs the prediction tends to the link's least-squares band
    map. Ridge ``n0`` (by number of earlier pairs) and pooling ``w`` over units are learned (``icwm.model.fit``).
    """

    def __init__(self) -> None:
        super().__init__()
        n0, slope, w = BAND_FIT_INIT                            # [1] shapes: DeepSpeed broadcasts 1-d tensors
        self.log_n0 = nn.Parameter(torch.full((1,), math.log(n0)))
        self.n0_slope = nn.Parameter(torch.full((1,), slope))
        self.log_pool = nn.Parameter(torch.full((1,), math.log(w)))

    def regressors(self, ul: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """ul, b: delay x beam grids [B, P, T, D, N] -> regressors [B, P, D N, T, 2 half + 2]."""
        reg = torch.cat((delay_taps(ul, BAND_HALF_WIDTH), b[..., None]), -1)       # [B, P, T, D, N, F]
        return reg.permute(0, 1, 3, 4, 2, 5).flatten(2, 3)

    def forward(self, ul: torch.Tensor, dl: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """ul (input), dl (labels), base (prediction): band grids [B, P, T, S, N] c64 -> correction [B, P, T, S, N].

        Pair p's correction reads pairs < p only (``dl`` of pairs >= p never enters it).
        """
        check(ul.shape == dl.shape == base.shape, "BandMap(ul, dl, base)", "one shape",
              (tuple(ul.shape), tuple(dl.shape), tuple(base.shape)))
        b_t = to_delay_beam(base)
        reg = self.regressors(to_delay_beam(ul), b_t)                              # [B, P, U, T, F]
        resid = (to_delay_beam(dl) - b_t).permute(0, 1, 3, 4, 2).flatten(2, 3)[..., None]   # [B, P, U, T, 1]
        n0 = ridge_prior(self.log_n0, self.n0_slope, reg.shape[1])
        corr = unit_ridge(reg, resid, n0, torch.exp(self.log_pool))[..., 0]         # [B, P, U, T]
        return from_delay_beam(corr.unflatten(2, base.shape[-2:]).permute(0, 1, 4, 2, 3))
