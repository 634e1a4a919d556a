"""Why the network's read-out of the precoding map lags an offline one: training budget, input scale, given form.

pre_mm, the features of ``map_readout.py`` (the shipped model's ridge map of the query, counts, stated nominal), an MLP
read-out (64 GELU units, AdamW lr 1e-3, weight decay 0.1, batch 144 = 16 episodes x ~9 pairs, the recipe's optimiser
settings) trained on the training shards' latent groups for 150 / 450 / 3,000 steps (the short A/B recipe gives the
probe ~340 latent pre_mm batches, the full one ~450), with raw or standardised inputs (training-set mean and sd), and
with the given-form groups added (their SNR is an input there, the probe's target). SNR error at k = 16 (dB).

    OMP_NUM_THREADS=1 python docs/results/probe_memo_s25/readout_budget.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from map_readout import dataset  # noqa: E402
from probe_memo import fresh_groups, shard_groups  # noqa: E402

from icwm.eval.runner import load_model  # noqa: E402

ROOT = Path("data/shards/small_nominal")


def given_groups(task: str) -> dict[str, dict[str, torch.Tensor]]:
    """The training shards' given-form groups, their input SNR as the target."""
    return {s: {**g, "latent_snr_db": g["snr_db"]} for s, g in shard_groups(ROOT, task, "seen_").items()}


def main() -> None:
    model, _ = load_model("shipped", torch.device("cpu"))
    task = "pre_mm"
    fit = model.embedders[task].fit
    x, y = dataset(fit, shard_groups(ROOT, task), range(1, 17), 8, 0)
    xg, yg = dataset(fit, given_groups(task), range(1, 17), 8, 1)
    seen = ["configs/systems/latent_seen.yaml", "configs/systems/latent_seen_nominal.yaml"]
    tests = {"fresh seen": dataset(fit, fresh_groups(seen, task, 16, 12345), [16], 1, 99),
             "unseen": dataset(fit, fresh_groups(["configs/systems/latent_unseen.yaml"], task, 16, 12345), [16], 1, 99)}
    print("| inputs | training groups | steps | fresh seen (dB) | unseen (dB) |\n|---|---|---|---|---|")
    for norm in (False, True):
        for groups, (X, Y) in (("latent", (x, y)), ("latent + given", (torch.cat((x, xg)), torch.cat((y, yg))))):
            mu, sd = X.mean(0), X.std(0).clamp_min(1e-3)
            f = (lambda a: (a - mu) / sd) if norm else (lambda a: a)
            for steps in (150, 450, 3000):
                torch.manual_seed(0)
                net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
                opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.1)
                for _ in range(steps):
                    idx = torch.randint(len(X), (144,))
                    loss = (net(f(X[idx]))[:, 0] - Y[idx] / 20.0).pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    e = {n: (20 * net(f(a))[:, 0] - b).abs().mean().item() for n, (a, b) in tests.items()}
                print(f"| {'standardised' if norm else 'raw'} | {groups} | {steps} | {e['fresh seen']:.2f} | "
                      f"{e['unseen']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
