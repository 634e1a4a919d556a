"""ICL efficiency (../shared/ICL.md section 3): how much of what the demonstrations can teach a method uses.

For a task's primary metric m in the scale the reports use, on the same queries:

    eta(k) = (m_method(k) - m_blind) / (m_oracle - m_blind)

eta = 0: the demonstrations are not used; eta = 1: as good as being told the latent theta. m is a smooth function of
per-query means (the mean itself, 10 log10 of the mean NMSE, log10 of the mean SER), so eta's standard error follows
from the paired per-query values by the delta method (influence functions of the three means). When the oracle -
blind gap is within ``GAP_Z`` standard errors of zero the family teaches nothing for that task and eta is NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from icwm.tasks import SPECS

# task -> (primary metric, +1 if larger is better else -1): the metric plotted and checked for "improves with k".
PRIMARY: dict[str, tuple[str, int]] = {t: (s.primary, s.direction) for t, s in SPECS.items()}
# The metric eta is computed on (and latent families are plotted in): ``TaskSpec.eta_metric`` (bf: the gain ratio, the
# reason next to bf's SPEC).
ETA_PRIMARY: dict[str, tuple[str, int]] = {t: (s.eta_metric, s.direction) for t, s in SPECS.items()}
# primary metric -> (per-query metric it is computed from, scale applied to the mean)
SCALE: dict[str, tuple[str, str]] = {"nmse_mean_db": ("nmse", "db"), "ser": ("ser", "log10")}
GAP_Z = 2.0          # oracle - blind within this many standard errors: the family teaches nothing
FLOOR = 1e-5         # means are floored here before a log (an SER of 0 over the episodes)


@dataclass
class Eta:
    """eta with its paired standard error, and the oracle - blind gap (scaled metric) with its own."""

    eta: float
    eta_se: float
    gap: float
    gap_se: float
    n: int

    @property
    def teaches(self) -> bool:
        """True when the oracle - blind gap exceeds ``GAP_Z`` standard errors."""
        return math.isfinite(self.gap_se) and abs(self.gap) > GAP_Z * self.gap_se


def per_query_metric(task: str) -> tuple[str, str]:
    """(per-query metric name, scale ``"mean" | "db" | "log10"``) of the metric ``task``'s eta is computed on."""
    name = ETA_PRIMARY[task][0]
    return SCALE.get(name, (name, "mean"))


def _f(mean: torch.Tensor, scale: str) -> tuple[float, float]:
    """(f(mean), f'(mean)) of the scale's function of a mean."""
    m = float(mean)
    if scale == "mean":
        return m, 1.0
    m = max(m, FLOOR)
    c = 10.0 if scale == "db" else 1.0
    return c * math.log10(m), c / (m * math.log(10.0))


def eta(method: torch.Tensor, blind: torch.Tensor, oracle: torch.Tensor, scale: str = "mean") -> Eta:
    """eta and the gap from per-query values of the same queries.

    Args:
        method, blind, oracle: [query] per-query metric values (e.g. per-query NMSE, SER, sum rate).
        scale: ``"mean"``, ``"db"`` (10 log10 of the mean) or ``"log10"`` (log10 of the mean).
    Returns:
        ``Eta`` over the queries finite in all three (NaN eta when the family teaches nothing).
    """
    ok = torch.isfinite(method) & torch.isfinite(blind) & torch.isfinite(oracle)
    a, b, c = (t[ok].double() for t in (method, blind, oracle))
    n = int(ok.sum())
    if n < 2:
        return Eta(math.nan, math.nan, math.nan, math.nan, n)
    (fa, da), (fb, db), (fc, dc) = (_f(t.mean(), scale) for t in (a, b, c))
    gap = fc - fb
    gap_se = float((dc * (c - c.mean()) - db * (b - b.mean())).std() / math.sqrt(n))
    out = Eta(math.nan, math.nan, gap, gap_se, n)
    if not out.teaches:
        return out
    e = (fa - fb) / gap
    # first-order influence of each query through the three means on e = (fa - fb) / (fc - fb)
    infl = (da * (a - a.mean()) + db * (fa - fc) / gap * (b - b.mean()) - dc * e * (c - c.mean())) / gap
    out.eta, out.eta_se = e, float(infl.std() / math.sqrt(n))
    return out
