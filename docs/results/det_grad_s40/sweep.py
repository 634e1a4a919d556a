"""Diagnostic: det's eta(1) against its in-context ridge at one earlier pair, for one model.

The ridge at j earlier pairs is exp(log_n0 + slope / j + table[j]) (``icwm.model.icr.InContextRidge``); this shifts
``table[1]`` in memory by each value of ``--shifts`` and evaluates det at k = 1 on the latent seen family (the
training systems; 256 episodes per system) with seed 7, which no shipped evaluation draws (they use seed 1), so the best shift is read on
episodes the evaluation never sees. Saves nothing but the printed table (and ``--out`` as CSV).

    OMP_NUM_THREADS=2 python docs/results/det_grad_s40/sweep.py --model outputs/pretrain/det_base_s40/model
"""
from __future__ import annotations

import argparse
import csv

import torch

from icwm.config import load_cli
from icwm.eval.config import EvalConfig
from icwm.eval.runner import load_families, load_model, resolve_device, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--shifts", type=float, nargs="+", default=[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    cfg = load_cli(EvalConfig, ["--config", "configs/eval/latent.yaml", "tasks=[det]", "ks=[1]",
                                "families=[latent_seen]", f"model={args.model}", f"seed={args.seed}",
                                f"episodes={args.episodes}"])
    families = load_families(cfg)
    model, _ = load_model(cfg.model, resolve_device(cfg.device))
    icr = model.embedders.det.icr
    base = float((icr.log_n0[0] + icr.slope[0] + icr.table[1]).detach())
    rows, done = [], 0.0
    for shift in args.shifts:
        with torch.no_grad():
            icr.table[1] += shift - done
        done = shift
        r = next(r for r in run(cfg, model, families).rows
                 if r["method"] == "icwm" and r["metric"] == "eta" and r["system"] == "all")
        rows.append({"log_ridge_j1": round(base + shift, 3), "shift": shift, "eta1": round(float(r["value"]), 4)})
        print(rows[-1], flush=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
