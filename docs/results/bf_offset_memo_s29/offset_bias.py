"""The latent probe's panel-offset estimate on the systems that state a nominal offset: error, bias and slope.

64 fresh groups of 17 pairs per system (seed 4242), k = 0 / 4 / 16: mean absolute error and mean signed error (bias)
of the probe's offset, and the least-squares slope of (estimate - nominal) on (true - nominal) (1: it follows the
offset from the nominal in full).

    OMP_NUM_THREADS=1 python docs/results/bf_offset_memo_s29/offset_bias.py --model <dir> [--model <dir> ...]
"""
import argparse

import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.eval.runner import load_model, model_query_pred, query

FAMILIES = ["configs/systems/dual_latent_unseen.yaml", "configs/systems/dual_latent_seen_nominal.yaml"]


def rows(model, name: str) -> list[str]:
    bf, out = tasks.get("bf"), []
    for fam in FAMILIES:
        for system in load_family(fam):
            g = bf.generate(system, 64, 17, torch.Generator().manual_seed(4242))
            q = query(g)
            true, nom = q["latent_panel_offset_deg"], q["prior_panel_offset_deg"]
            cells = []
            for k in (0, 4, 16):
                with torch.no_grad():
                    hat = model_query_pred(model, bf, g, k, torch.device("cpu"))["latent_hat_panel_offset_deg"]
                r = true - nom
                slope = ((hat - nom) * r).sum() / (r * r).sum()
                cells.append(f"{(hat - true).abs().mean():.2f}, {(hat - true).mean():+.2f}, {slope:.2f}")
            out.append(f"| {name} | {system.name} | {nom[0]:+.1f} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a model directory (repeatable)")
    print("| model | system | nominal (deg) | k = 0: error, bias, slope | k = 4 | k = 16 |\n|---|---|---|---|---|---|")
    for path in ap.parse_args().model:
        model, _ = load_model(path, torch.device("cpu"))
        print("\n".join(rows(model, path.rstrip("/").split("/")[-2])), flush=True)


if __name__ == "__main__":
    main()
