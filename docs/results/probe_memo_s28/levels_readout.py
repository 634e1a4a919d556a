"""Can a read-out of the precoding fit's map read the SNR on crowded (K = Nt) systems when told the channel levels?

The fit regresses each user's log label on ``[1, log gain, log orthogonality]`` centred over the pair's users, so its
map cannot show how crowded a system is, and how a solver's allocation moves with the SNR depends on that. Features
per k = 16 episode of a latent group (random order): the in-context map of the query (2 x 3 coefficients) of the
model ``--model`` (default: the shipped one), the count features, the stated nominal SNR (else 0, and a flag), and
with levels also
``precoding.channel_levels`` (the users' mean log gain and mean log orthogonality, K / Nt) averaged over the episode's
pairs. An MLP (64 GELU units, inputs standardised with the training set's statistics, Adam, 3,000 steps) per feature
set, trained on the training shards' latent groups at k = 1..16 only; reported: mean absolute SNR error and mean bias
at k = 16 on fresh groups of each seen system and of the latent unseen family (16 groups per system, 4 orders).

    OMP_NUM_THREADS=1 python docs/results/probe_memo_s28/levels_readout.py --model <dir or "shipped"> \
        > docs/results/probe_memo_s28/levels_readout_<version>.md
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s25"))
from probe_memo import fresh_groups, sample_episodes, shard_groups  # noqa: E402

from icwm.eval.runner import load_model  # noqa: E402
from icwm.model.precoding import centred_regressors, channel_levels, fit_targets, log_gain_orth  # noqa: E402

SEEN = ["configs/systems/latent_seen.yaml", "configs/systems/latent_seen_nominal.yaml"]


def features(fit, g: dict, k: int, rng: torch.Generator, levels: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [group, F], true SNR dB [group]) of k-demonstration episodes of the groups ``g``."""
    n = g["h"].shape[0]
    h, lam = sample_episodes(g, k, rng)
    with torch.no_grad():
        f = log_gain_orth(h @ h.mH)
        maps = fit.icr.maps(centred_regressors(f)[:, :, None], fit_targets(lam)[:, :, None])[:, -1, 0].flatten(1)
    prior = g.get("prior_snr_db")
    nom = prior[:, 0].float() / 20.0 if prior is not None else torch.zeros(n)
    parts = [maps, torch.tensor([1.0 / max(k, 1), float(k > 0)]).expand(n, 2), nom[:, None],
             torch.full((n, 1), float(prior is not None))]
    if levels:
        parts.append(channel_levels(f, h.shape[-1]).mean(1))
    return torch.cat(parts, 1), g["latent_snr_db"][:, 0].float()


def dataset(fit, groups: dict, ks, reps: int, seed: int, levels: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    parts = [features(fit, g, k, rng, levels) for _ in range(reps) for g in groups.values() for k in ks]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def train_mlp(x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """An MLP read-out of standardised features, trained on (x, y); returns the predictor (SNR in dB)."""
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-5
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(3000):
        idx = torch.randint(len(x), (256,))
        loss = (net((x[idx] - mu) / sd)[:, 0] - y[idx] / 20.0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lambda z: 20.0 * net((z - mu) / sd)[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="shipped", help='a model directory, or "shipped"')
    model, _ = load_model(ap.parse_args().model, torch.device("cpu"))
    root = Path("data/shards/small_nominal")
    print("| task | family | system | K, Nt | map only: error, bias (dB) | map + levels: error, bias (dB) |")
    print("|---|---|---|---|---|---|")
    for task in ("pre_sr", "pre_mm"):
        fit = model.embedders[task].fit
        train = shard_groups(root, task)
        sets = {"seen": fresh_groups(SEEN, task, 16, 12345),
                "unseen": fresh_groups(["configs/systems/latent_unseen.yaml"], task, 16, 12345)}
        readers = {lev: train_mlp(*dataset(fit, train, range(1, 17), 8, 0, lev)) for lev in (False, True)}
        for family, groups in sets.items():
            for name, g in groups.items():
                cells = []
                for lev, read in readers.items():
                    xs, ys = dataset(fit, {name: g}, [16], 4, 99, lev)
                    with torch.no_grad():
                        e = read(xs) - ys
                    cells.append(f"{e.abs().mean():.2f}, {e.mean():+.2f}")
                shape = f"{g['h'].shape[-2]}, {g['h'].shape[-1]}"
                print(f"| {task} | {family} | {name} | {shape} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
