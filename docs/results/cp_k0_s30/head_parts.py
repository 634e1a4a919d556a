"""cp's head by parts at k = 0 and 16: the full head, without its token-generated filter, without its learned
correction, and the first guess alone (both removed); the in-context ridge, where the model has one, stays on.

64 fresh groups of 17 pairs per latent system (seed 4242); NMSE of the query's future block in dB of the mean over
the groups (the training loss's average, linear NMSE per sample).

    OMP_NUM_THREADS=1 python docs/results/cp_k0_s30/head_parts.py --model <dir> [--model <dir> ...]
"""
import argparse
import copy

import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.eval.runner import load_model, model_query_pred, query

FAMILIES = ["configs/systems/link_latent_unseen.yaml", "configs/systems/link_latent_seen.yaml"]
PARTS = {"full": (), "no filter": ("filter",), "no correction": ("correction",),
         "first guess": ("filter", "correction")}


def without(model: torch.nn.Module, parts: tuple) -> torch.nn.Module:
    """A copy of ``model`` whose cp head lacks ``parts`` ("filter": no FilterTaps; "correction": its read-out
    zeroed)."""
    m = copy.deepcopy(model)
    head = m.heads["cp"]
    if "filter" in parts:
        head.filter = None
    if "correction" in parts:
        with torch.no_grad():
            head.out.weight.zero_()
            head.out.bias.zero_()
    return m


def rows(model: torch.nn.Module, name: str) -> list[str]:
    cp, variants, out = tasks.get("cp"), {p: without(model, parts) for p, parts in PARTS.items()}, []
    for fam in FAMILIES:
        for system in load_family(fam):
            g = cp.generate(system, 64, 17, torch.Generator().manual_seed(4242))
            y = query(g)["h_fut"]
            cells = []
            for k in (0, 16):
                for m in variants.values():
                    with torch.no_grad():
                        p = model_query_pred(m, cp, g, k, torch.device("cpu"))["h_fut"]
                    e = (p - y).abs().pow(2).flatten(1).sum(1) / y.abs().pow(2).flatten(1).sum(1)
                    cells.append(f"{10 * torch.log10(e.mean()):.2f}")
            out.append(f"| {name} | {system.name} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a model directory or 'shipped' (repeatable)")
    heads = [f"k = {k}: {p}" for k in (0, 16) for p in PARTS]
    print("| model | system | " + " | ".join(heads) + " |\n|---|---|" + "---|" * len(heads))
    for path in ap.parse_args().model:
        model, _ = load_model(path, torch.device("cpu"))
        name = "v21 (shipped)" if path == "shipped" else path.rstrip("/").split("/")[-2]
        print("\n".join(rows(model, name)), flush=True)


if __name__ == "__main__":
    main()
