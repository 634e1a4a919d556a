"""Diagnostic: the shipped model's given form for bf and pe with the latent probe's offset as read, and set to 0.

The given form applies no panel offset (bf) and no power offset (pe): ``tasks.bf`` / ``tasks.pe`` draw them only in
the latent form, and training targets the probe's read there at 0. bf's head rotates the sub-6 angle map by the
probe's panel offset; pe's adds the probe's power offset to its read-out before the in-context correction. A forward
pre-hook on the head replaces the offset by 0 in memory (nothing is saved): at every pair (arm "zero") or only at pair
0, the pair with no earlier pairs (arm "zero0": the query at k = 0, the first demonstration otherwise, whose prediction
enters the later pairs' in-context correction for pe). The arms run on the same episodes
(``configs/eval/default.yaml``, 32 episodes per system, the given seen / unseen families, k = 0 / 1 / 4 / 16). Writes
``<out>/seed<s>/{read,zero,zero0}/results.csv`` (the evaluation's rows for the two tasks); compare them with
``docs/results/v17_latent/given_paired.py``.

    OMP_NUM_THREADS=2 python docs/results/given_offset_s42/given_zero.py --seed 1 --out docs/results/given_offset_s42
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from icwm.config import load_cli
from icwm.eval.config import EvalConfig
from icwm.eval.report import write_csv
from icwm.eval.runner import load_families, load_model, resolve_device, run
from icwm.model.icwm import nominal_at_pair0

OFFSET = {"bf": "panel_offset_deg", "pe": "power_offset_db"}     # the probe's latent each head reads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="outputs/given_offset")
    args = ap.parse_args()
    cfg = load_cli(EvalConfig, ["--config", "configs/eval/default.yaml", "tasks=[bf,pe]", "ks=[0,1,4,16]",
                                "families=[seen,unseen]", "episodes=32", "batch_size=32", f"model={args.model}",
                                f"seed={args.seed}"])
    families = load_families(cfg)
    model, _ = load_model(cfg.model, resolve_device(cfg.device))
    zero = {"arm": "read"}

    def hook(task: str):
        def offset_zero(_, inputs):
            hx, ctx, latent = inputs
            v = latent[OFFSET[task]]
            if zero["arm"] == "zero":
                latent = {**latent, OFFSET[task]: torch.zeros_like(v)}
            elif zero["arm"] == "zero0":
                latent = {**latent, OFFSET[task]: nominal_at_pair0(v, torch.zeros_like(v[:, :1]))}
            return hx, ctx, latent
        return offset_zero

    for task in OFFSET:
        model.heads[task].register_forward_pre_hook(hook(task))
    for arm in ("read", "zero", "zero0"):
        zero["arm"] = arm
        out = Path(args.out) / f"seed{args.seed}" / arm
        out.mkdir(parents=True, exist_ok=True)
        write_csv(run(cfg, model, families).rows, out / "results.csv")
        print(f"wrote {out / 'results.csv'}")


if __name__ == "__main__":
    main()
