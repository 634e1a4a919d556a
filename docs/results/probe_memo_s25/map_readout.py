"""How well can a read-out trained on the training shards read the SNR off the precoding fit's raw map?

Features per episode (k demonstrations, random order): the shipped model's own in-context ridge map of the query
(``PrecodingFit``'s 2 x 3 coefficients, pair k's map from pairs < k) and the count features (1 / k, 1), plus the
stated nominal SNR where the system states one (else 0, and a flag). Read-outs trained on the training shards'
latent groups only: least squares on quadratic features, and an MLP (64 GELU units, Adam). Reported: mean absolute
SNR error on the training groups, fresh groups of the same systems and the latent unseen family, at k = 4 and 16.

    OMP_NUM_THREADS=2 python docs/results/probe_memo_s25/map_readout.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from probe_memo import fresh_groups, sample_episodes, shard_groups  # noqa: E402

from icwm.eval.runner import load_model  # noqa: E402
from icwm.model.precoding import fit_regressors, fit_targets  # noqa: E402

KS = (4, 16)


def features(fit, g: dict[str, torch.Tensor], k: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [group, 10], true SNR [group]) of k-demonstration episodes of the groups ``g``."""
    n = g["h"].shape[0]
    h, lam = sample_episodes(g, k, rng)
    with torch.no_grad():
        reg = fit_regressors(h @ h.mH)
        maps = fit.icr.maps(reg[:, :, None], fit_targets(lam)[:, :, None])[:, -1, 0].flatten(1)   # [group, 6]
    prior = g.get("prior_snr_db")
    nom = prior[:, 0].float() / 20.0 if prior is not None else torch.zeros(n)
    flag = torch.full((n,), float(prior is not None))
    count = torch.tensor([1.0 / max(k, 1), float(k > 0)]).expand(n, 2)
    return torch.cat((maps, count, nom[:, None], flag[:, None]), 1), g["latent_snr_db"][:, 0].float()


def dataset(fit, groups: dict, ks, reps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    parts = [features(fit, g, k, rng) for _ in range(reps) for g in groups.values() for k in ks]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def quad(x: torch.Tensor) -> torch.Tensor:
    return torch.cat((x, x[:, :6] ** 2, x[:, :6] * x[:, 6:7], torch.ones(len(x), 1)), 1)


def train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for step in range(3000):
        idx = torch.randint(len(x), (256,))
        loss = (net(x[idx])[:, 0] - y[idx] / 20.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def main() -> None:
    model, _ = load_model("shipped", torch.device("cpu"))
    root = Path("data/shards/small_nominal")
    seen = ["configs/systems/latent_seen.yaml", "configs/systems/latent_seen_nominal.yaml"]
    print("| task | read-out | set | error k=4 (dB) | error k=16 (dB) |\n|---|---|---|---|---|")
    for task in ("pre_mm", "pre_sr"):
        fit = model.embedders[task].fit
        train = shard_groups(root, task)
        x, y = dataset(fit, train, range(1, 17), 8, 0)
        beta = torch.linalg.lstsq(quad(x), y[:, None]).solution
        lin = torch.linalg.lstsq(torch.cat((x, torch.ones(len(x), 1)), 1), y[:, None]).solution
        net = train_mlp(x, y)
        sets = {"training": train, "fresh seen": fresh_groups(seen, task, 16, 12345),
                "unseen": fresh_groups(["configs/systems/latent_unseen.yaml"], task, 16, 12345)}
        for name, groups in sets.items():
            for ro in ("linear", "quadratic", "mlp"):
                errs = []
                for k in KS:
                    xs, ys = dataset(fit, groups, [k], 1, 99)
                    with torch.no_grad():
                        pred = {"linear": lambda: (torch.cat((xs, torch.ones(len(xs), 1)), 1) @ lin)[:, 0],
                                "quadratic": lambda: (quad(xs) @ beta)[:, 0],
                                "mlp": lambda: 20.0 * net(xs)[:, 0]}[ro]()
                    errs.append((pred - ys).abs().mean().item())
                print(f"| {task} | {ro} | {name} | {errs[0]:.2f} | {errs[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
