"""cp at k = 0 and 1 on the training systems (the seen given and latent families, 64 fresh groups of 17 pairs per
system, seed 4242), with the ICR ridge of j = 1 as trained and 100x stronger: NMSE of the query's future block in dB
of the mean over the groups (the training loss's average, linear NMSE per sample). A diagnosis on training-style
episodes, not a setting.

    OMP_NUM_THREADS=1 python docs/results/icr_k1_s31/train_k1.py <model dir>
"""
import sys

import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.eval.runner import load_model, model_query_pred, query
from ridge_k1 import scale_j1

FAMILIES = ["configs/systems/link_seen.yaml", "configs/systems/link_latent_seen.yaml"]
FACTORS = (1.0, 100.0)


def main(path: str) -> None:
    factor = {"j1": 1.0}
    scale_j1(factor)
    model, _ = load_model(path, torch.device("cpu"))
    model.heads["cp"].fit.icr.scale_j1 = True           # cp's head only
    cp = tasks.get("cp")
    print("| system | " + " | ".join(f"k = {k}, j = 1 ridge x{f:g}" for f in FACTORS for k in (0, 1)) + " |")
    print("|---|" + "---|" * 2 * len(FACTORS))
    for fam in FAMILIES:
        for system in load_family(fam):
            g = cp.generate(system, 64, 17, torch.Generator().manual_seed(4242))
            y = query(g)["h_fut"]
            cells = []
            for f in FACTORS:
                factor["j1"] = f
                for k in (0, 1):
                    with torch.no_grad():
                        p = model_query_pred(model, cp, g, k, torch.device("cpu"))["h_fut"]
                    e = (p - y).abs().pow(2).flatten(1).sum(1) / y.abs().pow(2).flatten(1).sum(1)
                    cells.append(f"{10 * torch.log10(e.mean()):.2f}")
            print(f"| {system.name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
