"""Does the latent probe generalise from the training groups? Probe SNR error on training groups vs fresh ones.

For a trained model and each precoding task: the probe's mean absolute SNR error (dB) at the query of k-demonstration
episodes taken from (a) the training shards' latent groups (the exact episodes the model was trained on, demos in
stored order), (b) fresh groups of the same latent systems (new seed; the model saw these systems, not these
draws) and (c) the latent unseen family. (a) << (b) says the probe memorised the training draws' SNRs instead of
learning to read them from the demonstrations.

    OMP_NUM_THREADS=2 python docs/results/probe_memo_s25/probe_memo.py --model <dir> --shards <dir>
"""
import argparse
import json
from pathlib import Path

import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.data.shards import load_shard
from icwm.eval.runner import load_model, model_query_pred, probe_errors, query

KS = (4, 16)


def shard_groups(root: Path, task: str, prefix: str = "prel_") -> dict[str, dict[str, torch.Tensor]]:
    """Training groups of ``task``'s systems named ``prefix``* (default: the latent ones): system -> tensors [group,
    sample, ...]."""
    out: dict[str, list[dict]] = {}
    for e in json.loads((root / "index.json").read_text())["shards"]:
        if e["task"] == task and e["system"].startswith(prefix):
            out.setdefault(e["system"], []).append(load_shard(root / e["file"])[0])
    return {s: {k: torch.cat([p[k] for p in parts]) for k in parts[0]} for s, parts in out.items()}


def fresh_groups(files: list[str], task: str, n: int, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """``n`` new groups of 17 samples of every system in ``files``."""
    systems = [s for f in files for s in load_family(f)]
    return {s.name: tasks.get(task).generate(s, n, 17, torch.Generator().manual_seed(seed)) for s in systems}


def sample_episodes(g: dict[str, torch.Tensor], k: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """k + 1 samples of each group in a random order (the last is the query): (h [group, k + 1, user, ant], lam_p
    [group, k + 1, user, 2])."""
    n, s = g["h"].shape[:2]
    order = torch.argsort(torch.rand(n, s, generator=rng), 1)[:, : k + 1]
    take = lambda x: torch.gather(x, 1, order[..., None, None].expand(-1, -1, *x.shape[2:]))     # noqa: E731
    return take(g["h"]), take(g["lam_p"])


def errors(model, task: str, groups: dict[str, dict[str, torch.Tensor]]) -> dict[int, float]:
    """Mean probe SNR error (dB) at each k in KS over all groups."""
    mod, out = tasks.get(task), {}
    for k in KS:
        errs = [probe_errors(model_query_pred(model, mod, g, k, torch.device("cpu")), query(g))["probe_err_snr_db"]
                for g in groups.values()]
        out[k] = torch.cat(errs).mean().item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--shards", default="data/shards/small_nominal")
    args = ap.parse_args()
    model, desc = load_model(args.model, torch.device("cpu"))
    print(f"model {desc}; shards {args.shards}\n")
    print("| task | groups | n | error k=4 (dB) | error k=16 (dB) |\n|---|---|---|---|---|")
    seen = ["configs/systems/latent_seen.yaml", "configs/systems/latent_seen_nominal.yaml"]
    for task in ("pre_sr", "pre_mm"):
        train = shard_groups(Path(args.shards), task)
        n = next(iter(train.values()))["h"].shape[0]
        sets = {"training (shards)": train, "fresh, same systems": fresh_groups(seen, task, n, 12345),
                "latent unseen": fresh_groups(["configs/systems/latent_unseen.yaml"], task, n, 12345)}
        for name, groups in sets.items():
            e = errors(model, task, groups)
            total = sum(g["h"].shape[0] for g in groups.values())
            print(f"| {task} | {name} | {total} | {e[4]:.2f} | {e[16]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
