"""Diagnostic: the shipped model's given-form bf with the latent probe's panel offset as read, and with it set to 0.

In the given form the sub-6 and mmWave panels are aligned (offset 0; ``tasks.bf`` draws an offset only in the latent
form), and bf's head is the sub-6 angle map rotated by the probe's offset times a positive confidence (which keeps
the argmax). A forward pre-hook on ``heads.bf`` records the offset the probe reads at the query, then (second pass)
replaces it by 0 in memory; nothing is saved. Gain ratio of
every family pooled, beside the angle map (the given form's classical baseline), on the candidates' given
evaluation (``configs/eval/default.yaml``, 32 episodes per system, seed 1).

    OMP_NUM_THREADS=2 python docs/results/bf_given_s39/given_offset.py --out docs/results/bf_given_s39
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
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--out", default="outputs/bf_given")
    args = ap.parse_args()
    cfg = load_cli(EvalConfig, ["--config", "configs/eval/default.yaml", "tasks=[bf]", "ks=[0,1,4,16]",
                                "families=[seen,unseen]", "episodes=32", "batch_size=32", f"model={args.model}"])
    families = load_families(cfg)
    model, _ = load_model(cfg.model, resolve_device(cfg.device))
    zero, read = {"on": False}, {}

    def offset_zero(_, inputs):
        hx, ctx, latent = inputs
        if not zero["on"]:          # the query's offset as read, per k (the evaluation passes k demos + the query)
            read.setdefault(hx.shape[1] - 1, []).append(latent["panel_offset_deg"][:, -1].detach())
        else:
            latent = {**latent, "panel_offset_deg": torch.zeros_like(latent["panel_offset_deg"])}
        return hx, ctx, latent

    model.heads["bf"].register_forward_pre_hook(offset_zero)
    rows = []
    for on in (False, True):
        zero["on"] = on
        for r in run(cfg, model, families).rows:
            if r["metric"] == "gain_ratio" and r["system"] == "all" and (r["method"] == "icwm" or not on):
                rows.append({"method": r["method"] + ("_offset0" if on and r["method"] == "icwm" else ""),
                             "family": r["family"], "k": r["k"], "gain_ratio": round(float(r["value"]), 4)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "given_offset.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        if r["method"] in ("icwm", "icwm_offset0", "angle_map"):
            print(r)
    for k, v in sorted(read.items()):
        v = torch.cat(v)
        print(f"k = {k}: the probe's offset at the query (true 0), rms {float(v.pow(2).mean().sqrt()):.2f} deg, "
              f"median |.| {float(v.abs().median()):.2f} deg, n {v.numel()}")


if __name__ == "__main__":
    main()
