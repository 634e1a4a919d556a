"""Diagnostic: pf's eta(k) when the shipped model's trained in-context ridge is made weaker at j >= 8 earlier pairs.

The model's weights are loaded, ``heads.pf.fit.icr.table[8:]`` (the per-j log-ridge offsets) is shifted in memory
by each value of ``--shifts`` and pf is evaluated on ``--family`` (``launch/evaluate.py``'s runner, eta pooled over
the family's systems). Nothing is saved: this asks whether the ridge training settled on is the one the family would
want, not a change to the model.

    OMP_NUM_THREADS=2 python docs/results/pf_reference_s39/ridge_shift.py --family configs/systems/link_latent_val.yaml
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from icwm.config import load_cli
from icwm.eval.config import EvalConfig
from icwm.eval.runner import load_families, load_model, resolve_device, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="configs/systems/link_latent_val.yaml")
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shifts", type=float, nargs="+", default=[0.0, -0.5, -1.0, -1.5, -2.0])
    ap.add_argument("--zero-prediction", action="store_true")
    ap.add_argument("--pool-off", action="store_true")
    ap.add_argument("--out", default="outputs/pf_reference")
    args = ap.parse_args()
    cfg = load_cli(EvalConfig, ["--config", "configs/eval/latent.yaml", "tasks=[pf]", "ks=[0,8,16]",
                                f"families=[{args.family}]", f"model={args.model}", "episodes=64", f"seed={args.seed}"])
    families = load_families(cfg)
    model, _ = load_model(cfg.model, resolve_device(cfg.device))
    icr = model.heads.pf.fit.icr
    if args.zero_prediction:
        icr.register_forward_pre_hook(lambda _, a: (torch.cat((a[0][..., :-1], 0 * a[0][..., -1:]), -1), *a[1:]))
    if args.pool_off:
        with torch.no_grad():
            icr.log_pool -= 30.0
    table = icr.table
    trained = table.detach().clone()
    rows = []
    for shift in args.shifts:
        with torch.no_grad():
            table.copy_(trained)
            table[8:] += shift
        for r in run(cfg, model, families).rows:
            if r["method"] in ("icwm", "in_context") and r["metric"] in ("eta", "eta_se") and r["system"] == "all":
                rows.append({"shift": shift, "k": r["k"], "method": r["method"], "metric": r["metric"],
                             "value": round(float(r["value"]), 4)})
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = ("_zero_prediction" if args.zero_prediction else "") + ("_pool_off" if args.pool_off else "")
    with open(out / f"ridge_shift_{Path(args.family).stem}{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
