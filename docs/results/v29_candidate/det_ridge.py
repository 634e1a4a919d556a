"""Diagnostic: candidate 29 with det's in-context ridge at one earlier pair set to v28's; det eta(0 / 1 / 4).

The ridge at j earlier pairs is exp(log_n0 + slope / j + table[j]) (``icwm.model.icr.InContextRidge``); this shifts
v29's ``table[1]`` in memory so that j = 1 matches the shipped v28's, evaluates det on the latent families as
``configs/eval/latent.yaml`` does (64 episodes per system, seed 1) and saves nothing.

    OMP_NUM_THREADS=2 python docs/results/v29_candidate/det_ridge.py
"""
from __future__ import annotations

import torch
from safetensors.torch import load_file

from icwm.config import load_cli
from icwm.eval.config import EvalConfig
from icwm.eval.runner import load_families, load_model, resolve_device, run


def log_ridge_j1(log_n0: torch.Tensor, slope: torch.Tensor, table: torch.Tensor) -> float:
    """The log-ridge at j = 1 earlier pair."""
    return float((log_n0[0] + slope[0] + table[1]).detach())


def main() -> None:
    v28 = load_file("icwm/assets/icwm-small/model.safetensors")
    cfg = load_cli(EvalConfig, ["--config", "configs/eval/latent.yaml", "tasks=[det]", "ks=[0,1,4]",
                                "families=[latent_unseen,latent_seen]", "model=outputs/pretrain/small_v29/model"])
    families = load_families(cfg)
    model, _ = load_model(cfg.model, resolve_device(cfg.device))
    icr = model.embedders.det.icr
    target = log_ridge_j1(*(v28[f"embedders.det.icr.{n}"] for n in ("log_n0", "slope", "table")))
    now = log_ridge_j1(icr.log_n0, icr.slope, icr.table)
    print(f"log ridge at j = 1: v28 {target:.3f}, v29 {now:.3f}")
    for name, shift in (("v29", 0.0), ("v29 with v28's j = 1 ridge", target - now)):
        with torch.no_grad():
            icr.table[1] += shift
        etas = {(r["family"], int(r["k"])): round(float(r["value"]), 3) for r in run(cfg, model, families).rows
                if r["method"] == "icwm" and r["metric"] == "eta" and r["system"] == "all"}
        print(name, etas, flush=True)


if __name__ == "__main__":
    main()
