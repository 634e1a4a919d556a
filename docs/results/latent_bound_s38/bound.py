"""How much can a few demonstrations teach bf's panel offset and pe's power offset? Bayes references for eta(k).

bf's latent is the panel offset phi, uniform over the range the system states. A demonstration (h_sub6, beam)
implies z = sub-6 azimuth - beam azimuth (``beams.fit_panel_offset``'s per-pair offset), which is phi plus an error
e whose distribution has a core and outliers (the sub-6 dominant path is not the mmWave best beam's). Told that
error distribution and the gain lost per degree of offset error (both measured on a first set of episodes, with the
true phi), the Bayes choice for the query's offset after k pairs is

    phi_hat = argmax_a  sum_phi  p(phi | z_1..z_k) g(a - phi),   p(phi | z) ~ prior(phi) prod_i f_e(z_i - phi)

(g: the mean gain ratio at an offset error; f_e: a kernel density of e). Its eta(k) on a second, independent set of
episodes (blind and oracle as in ``tasks.bf``) is what a method that knew the error model could reach; no method
has it, so it is a reference, not a target a model can be held to exactly. Each system gets its own f_e and g.

pe (``--task pe``): a demonstration implies z = label - (the classical path loss at Delta = 0) = Delta + e; the Bayes
choice is the posterior mean of Delta (uniform prior on the stated range, f_e measured on the first set), added to
the query's classical path loss, as ``tasks.pe``'s oracle / blind / in-context estimators are built.

    OMP_NUM_THREADS=2 python docs/results/latent_bound_s38/bound.py --task bf --episodes 256 \
        --out docs/results/latent_bound_s38
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch

from icwm.data.config import load_family
from icwm.eval import runner
from icwm.eval.eta import eta, per_query_metric
from icwm.tasks import bf, pe
from icwm.tasks import dual_common as dc
from icwm.tasks.common import PRIOR_PREFIX
from icwm.wireless import beams

KS = (0, 1, 2, 4, 16)
STEP = 0.1          # the latent grid's step (bf degrees, pe dB), fine against either error's spread
BANDWIDTH = 0.5     # the error density's kernel width (bf: the beam grid is 0.45 deg wide at broadside; pe: dB)


def draw(task, system, n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` episodes of ``task`` with 17 pairs (the query last), drawn as the evaluation draws them."""
    parts = list(runner.episodes(task, system, n, 17, 32, (seed, system.name)))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def with_azimuth(s: dict) -> dict:
    """``s`` with ``az`` [E, pair] rad (the sub-6 dominant azimuth, computed once) and ``z`` [E, pair] degrees (each
    pair's implied panel offset)."""
    az = beams.sub6_azimuth(s["h_sub6"])
    return {**s, "az": az, "z": torch.rad2deg(az - beams.beam_azimuth(s["beam"], s["beam_gain"].shape[-1]))}


def gain_at(s: dict, offset: torch.Tensor) -> torch.Tensor:
    """Gain ratio [E, pair] of the angle map at ``offset`` [E, pair] degrees."""
    beam = beams.rotated_angle_map(s["az"], s["beam_gain"].shape[-1], offset)
    return s["beam_gain"].gather(-1, beam[..., None])[..., 0]


def log_density(e: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Log of a Gaussian kernel density of the errors ``e`` [N] at ``deltas`` [D] (floored at 1e-12)."""
    kern = torch.exp(-0.5 * ((deltas[:, None] - e[None]) / BANDWIDTH) ** 2).mean(-1)
    return torch.log((kern / (BANDWIDTH * math.sqrt(2 * math.pi))).clamp_min(1e-12))


def error_model(s: dict, deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log f_e, g) at ``deltas`` [D] from the first set ``s``, with the true phi."""
    phi = s["latent_panel_offset_deg"]
    g = torch.stack([gain_at(s, phi + d).mean() for d in deltas])
    return log_density((s["z"] - phi).flatten(), deltas), g


def lookup(table: torch.Tensor, deltas: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``table`` (values at the grid ``deltas``) at the nearest grid point to ``x``, clamped to the grid's ends."""
    return table[((x - deltas[0]) / STEP).round().long().clamp(0, len(deltas) - 1)]


def posterior(z: torch.Tensor, lo: float, hi: float, log_f: torch.Tensor, deltas: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid [P], posterior [E, P]) of the latent given each episode's demos' implied values ``z`` [E, k] (z = latent
    + e, e ~ f_e independently) under a uniform prior on [lo, hi]."""
    grid = torch.arange(lo, hi + STEP / 2, STEP)
    return grid, torch.softmax(lookup(log_f, deltas, z[:, :, None] - grid).sum(1), -1)


def bayes_offset(z: torch.Tensor, lo: float, hi: float, log_f: torch.Tensor, g: torch.Tensor,
                 deltas: torch.Tensor) -> torch.Tensor:
    """[E] bf's Bayes action (the offset of greatest expected gain) for demos' implied offsets ``z`` [E, k]."""
    phi, post = posterior(z, lo, hi, log_f, deltas)                                    # [P], [E, P]
    acts = torch.arange(lo - 10.0, hi + 10.0 + STEP / 2, STEP)                         # [A]
    util = post @ lookup(g, deltas, acts[:, None] - phi).T                             # [E, A]
    return acts[util.argmax(-1)]


def error_summary(e: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation and the 50 / 90 % quantiles of |e| of a demonstration's error ``e`` [N]."""
    q = torch.quantile(e.abs().double(), torch.tensor([0.5, 0.9], dtype=torch.float64))
    return {"mean": round(float(e.mean()), 2), "std": round(float(e.std()), 2), "abs_p50": round(float(q[0]), 2),
            "abs_p90": round(float(q[1]), 2), "n": e.numel()}


def bf_system(system, n: int, deltas: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """(per-query gain ratios [E] of oracle, blind, ``bayes_k`` and ``in_context_k``; the error summary) on one
    system."""
    fit, test = (with_azimuth(draw(bf, system, n, seed)) for seed in (101, 202))
    log_f, g = error_model(fit, deltas)
    lo, hi = system.latent.panel_offset_deg
    q = {k: v[:, -1:] for k, v in test.items()}                                       # the query, [E, 1, ...]
    phi, prior = q["latent_panel_offset_deg"], q[PRIOR_PREFIX + "panel_offset_deg"]
    gq = {"oracle": gain_at(q, phi)[:, 0], "blind": gain_at(q, prior)[:, 0]}
    for k in KS:
        gq[f"bayes_{k}"] = gain_at(q, bayes_offset(test["z"][:, :k], lo, hi, log_f, g, deltas)[:, None])[:, 0]
        gq[f"in_context_{k}"] = gain_at(q, classical(test, k, prior))[:, 0]
    return gq, error_summary((fit["z"] - fit["latent_panel_offset_deg"]).flatten())


def pe_implied(s: dict) -> dict:
    """``s`` with ``base`` [E, pair] (the classical path loss at Delta = 0) and ``z`` = label - base."""
    base = dc.pathloss_estimate(s, torch.zeros(()))
    return {**s, "base": base, "z": s["pathloss_db"] - base}


def pe_system(system, n: int, deltas: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """(per-query NMSE [E] of pe's oracle, blind, ``bayes_k`` (posterior mean of Delta) and ``in_context_k``; the
    error summary) on one system."""
    fit, test = (pe_implied(draw(pe, system, n, seed)) for seed in (101, 202))
    e = (fit["z"] - fit["latent_power_offset_db"]).flatten()
    log_f = log_density(e, deltas)
    lo, hi = system.latent.power_offset_db
    base, t = test["base"][:, -1], test["pathloss_db"][:, -1]
    offsets = {"oracle": test["latent_power_offset_db"][:, -1], "blind": test[PRIOR_PREFIX + "power_offset_db"][:, -1]}
    for k in KS:
        grid, post = posterior(test["z"][:, :k], lo, hi, log_f, deltas)
        offsets[f"bayes_{k}"] = post @ grid
        sub = runner.take(test, k)
        offsets[f"in_context_{k}"] = dc.power_offset_fits(sub, sub["base"], sub["pathloss_db"])["in_context"][:, -1]
    return {m: (base + o - t).pow(2) / t.pow(2) for m, o in offsets.items()}, error_summary(e)


def classical(s: dict, k: int, prior: torch.Tensor) -> torch.Tensor:
    """[E, 1] the classical in-context offset (``beams.fit_panel_offset`` on the first ``k`` demos; the prior at
    k = 0), as ``tasks.bf``'s ``in_context`` baseline."""
    if k == 0:
        return prior
    use = torch.ones(s["az"].shape[0], 1, k, dtype=torch.bool)
    return beams.fit_panel_offset(s["az"][:, :k], s["beam"][:, :k], use, s["beam_gain"].shape[-1])


def table(task: str, system: str, gq: dict[str, torch.Tensor]) -> list[dict]:
    """Rows (system, k, method, eta, eta_se, gap, n) of the Bayes reference and the classical fit."""
    rows, scale = [], per_query_metric(task)[1]
    for k in KS:
        for m in ("bayes", "in_context"):
            r = eta(gq[f"{m}_{k}"], gq["blind"], gq["oracle"], scale)
            rows.append({"system": system, "k": k, "method": m, "eta": round(r.eta, 3), "eta_se": round(r.eta_se, 3),
                         "gap": round(r.gap, 4), "n": r.n})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("bf", "pe"), default="bf")
    ap.add_argument("--family", default="configs/systems/dual_latent_unseen.yaml")
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--out", default="outputs/latent_bound")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    deltas = torch.arange(-60.0, 60.0 + STEP / 2, STEP)
    rows, pooled, errors = [], {}, []
    per_system = bf_system if args.task == "bf" else pe_system
    for system in load_family(args.family):
        gq, err = per_system(system, args.episodes, deltas)
        errors.append({"system": system.name, **err})
        for name, v in gq.items():
            pooled.setdefault(name, []).append(v)
        rows += table(args.task, system.name, gq)
    rows += table(args.task, "pooled", {m: torch.cat(v) for m, v in pooled.items()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table_rows in (("", rows), ("_errors", errors)):
        with open(out / f"{args.task}_{Path(args.family).stem}{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table_rows[0]))
            w.writeheader()
            w.writerows(table_rows)
    for r in rows + errors:
        print(r)


if __name__ == "__main__":
    main()
