"""What can 16 demonstrations teach pf's band map? Classical in-context estimators beside the evaluation's band LS.

pf's oracle is the per-(delay, beam) band map fitted on 512 further snapshots of the link (``tasks.pf``); the
classical in-context reference (``band_ls``) fits the same map on the k demonstrations. This scores variants of that
fit on episodes no evaluation draws (other seeds), eta per family pooled (``icwm.eval.eta``, NMSE in dB of the mean):

- ``ls_n0=<r>``: the ridge band map (``duplex.band_map_ls``) with ridge ``r`` (the evaluation's ``band_ls``: r = 1);
- ``half0``: regressors at the bin only (no neighbouring delays);
- ``pool_t=<t>``: each bin's map shrunk toward its delay's map pooled over all beams (paths of one cluster share a
  delay, so the same phase turn across the duplex gap): c = (cross + t lam c_pool) (gram + t lam I)^-1;
- ``adapt_n0=<r>_w=<w>``: the ridge scaled per bin by rho^w, rho the bin's residual power of the ridge-r fit over the
  demos' DL power there (a link that fits well, e.g. at high SNR, gets a weaker ridge); ``adapt_link_...``: one rho
  per link, over all its bins.

    OMP_NUM_THREADS=2 python docs/results/pf_reference_s39/ref.py --family configs/systems/link_latent_val.yaml
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from icwm.data.config import load_family
from icwm.eval import runner
from icwm.eval.eta import eta, per_query_metric
from icwm.tasks import pf
from icwm.wireless import duplex
from icwm.wireless.estimation import ridge_solve

KS = (1, 2, 4, 8, 16)


def pooled_map(gram: torch.Tensor, cross: torch.Tensor, ul: torch.Tensor, n0: float, t: float) -> torch.Tensor:
    """DL band [..., sc, ant] of ``ul`` from the band map shrunk toward the beam-pooled map of its delay bin.

    gram [..., D, N, F, F], cross [..., D, N, F] (``duplex.band_map_stats``), ``t`` the shrinkage weight in units of
    the ridge ``lam`` (``t = 0``: the plain ridge map)."""
    xq = duplex.delay_taps(duplex.to_delay_beam(ul), 1)                               # [..., D, N, F]
    lam = n0 * xq.abs().pow(2).mean(-1) + 1e-12                                      # [..., D, N]
    g_pool, c_pool = gram.sum(-3), cross.sum(-2)                                     # [..., D, F, F], [..., D, F]
    lam_pool = lam.sum(-1) + 1e-12
    c0 = ridge_solve(g_pool, c_pool[..., None, :], lam_pool)[..., 0, :]               # [..., D, F]
    tl = t * lam
    coef = ridge_solve(gram, (cross + tl[..., None] * c0[..., None, :])[..., None, :], lam + tl)[..., 0, :]
    return duplex.from_delay_beam((coef * xq).sum(-1))


def adaptive_map(ul_d: torch.Tensor, dl_d: torch.Tensor, ul: torch.Tensor, n0: float, w: float,
                 pooled: bool = False) -> torch.Tensor:
    """DL band [..., sc, ant] of ``ul`` from the ridge map whose ridge scales with each bin's own fit residual:
    ``n0 rho^w`` with rho the demos' residual power of the ridge-``n0`` fit over their DL power in the bin (a high-SNR
    link fits well, so its ridge falls). ul_d, dl_d [..., k, sc, ant]."""
    x = duplex.delay_taps(duplex.to_delay_beam(ul_d), 1)                            # [..., k, D, N, F]
    y = duplex.to_delay_beam(dl_d)                                                   # [..., k, D, N]
    gram, cross = duplex.band_map_stats(ul_d, dl_d, 1)
    xq = duplex.delay_taps(duplex.to_delay_beam(ul), 1)
    power = xq.abs().pow(2).mean(-1)
    coef = ridge_solve(gram, cross[..., None, :], n0 * power + 1e-12)[..., 0, :]      # [..., D, N, F]
    res = (y - (coef[..., None, :, :, :] * x).sum(-1)).abs().pow(2).mean(-3)         # [..., D, N]
    rho = res / (y.abs().pow(2).mean(-3) + 1e-12)
    if pooled:                                      # one rho per link: the residual over all bins / their DL power
        rho = (res.sum((-1, -2)) / (y.abs().pow(2).mean(-3).sum((-1, -2)) + 1e-12))[..., None, None].expand_as(rho)
    lam = n0 * rho.clamp(1e-4, 1.0).pow(w).clamp_min(1e-3) * power + 1e-12
    coef = ridge_solve(gram, cross[..., None, :], lam)[..., 0, :]
    return duplex.from_delay_beam((coef * xq).sum(-1))


def predictions(s: dict, k: int, variants: dict) -> dict[str, torch.Tensor]:
    """Each variant's DL prediction of the query [E, sc, ant] from the first ``k`` demos (T = 1 snapshot a pair)."""
    ul_d, dl_d = s["h_ul"][:, :k, 0], s["h_dl"][:, :k, 0]                           # [E, k, sc, ant]
    q = s["h_ul"][:, -1, 0]
    out, stats = {}, {}
    for name, (half, n0, t) in variants.items():
        if name.startswith("adapt"):
            out[name] = adaptive_map(ul_d, dl_d, q, n0, t, name.startswith("adapt_link"))
            continue
        if half not in stats:                          # the demos' statistics depend on the window only
            stats[half] = duplex.band_map_stats(ul_d, dl_d, half)
        gram, cross = stats[half]
        out[name] = (duplex.band_map_apply(gram, cross, q, half, n0) if t == 0
                     else pooled_map(gram, cross, q, n0, t))
    return out


def nmse(pred: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-query NMSE [E] (linear, ``tasks.pf.loss``) of DL bands [E, sc, ant]."""
    return pf.loss({"h_dl": pred[:, None]}, {"h_dl": h[:, None]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="configs/systems/link_latent_val.yaml")
    ap.add_argument("--episodes", type=int, default=128)
    ap.add_argument("--seed", type=int, default=303)
    ap.add_argument("--out", default="outputs/pf_reference")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    variants = {f"ls_n0={r}": (1, r, 0.0) for r in (0.03, 0.1, 0.3, 1.0, 3.0)}
    variants |= {"half0": (0, 1.0, 0.0)} | {f"pool_t={t}": (1, 1.0, t) for t in (2.0, 8.0)}
    variants |= {f"adapt_n0={r}_w={w}": (1, r, w) for r in (1.0, 3.0, 10.0) for w in (0.5, 1.0)}
    variants |= {f"adapt_link_n0={r}_w={w}": (1, r, w) for r in (1.0, 3.0, 10.0) for w in (1.0, 2.0)}
    vals: dict[tuple, list] = {}
    for system in load_family(args.family):
        for s in runner.episodes(pf, system, args.episodes, 17, 32, (args.seed, system.name)):
            h = s["h_dl"][:, -1, 0]
            base = {"blind": nmse(s["h_ul"][:, -1, 0], h), "oracle": nmse(s["oracle_h_dl"][:, -1, 0], h)}
            for k in KS:
                per = {**base, **{n: nmse(p, h) for n, p in predictions(s, k, variants).items()}}
                for n, v in per.items():
                    vals.setdefault((system.name, k, n), []).append(v)
                    vals.setdefault(("pooled", k, n), []).append(v)
    scale = per_query_metric("pf")[1]
    rows = []
    for (sysname, k, n), v in vals.items():
        if n in ("blind", "oracle"):
            continue
        r = eta(torch.cat(v), torch.cat(vals[(sysname, k, "blind")]), torch.cat(vals[(sysname, k, "oracle")]), scale)
        rows.append({"system": sysname, "k": k, "method": n, "eta": round(r.eta, 3), "eta_se": round(r.eta_se, 3),
                     "n": r.n})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"pf_{Path(args.family).stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        if r["system"] == "pooled":
            print(r)


if __name__ == "__main__":
    main()
