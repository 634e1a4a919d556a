"""Slope and error of session 25's offline read-out (map_readout.py's MLP on the shipped model's precoding map,
counts and nominal, trained on the training shards' latent groups) on each latent pre_sr training system at k = 16:
is the in-network probe's compression towards the nominal also there?

    OMP_NUM_THREADS=2 python docs/results/probe_memo_s26/offline_slope.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s25"))
from map_readout import dataset, train_mlp  # noqa: E402
from probe_memo import shard_groups  # noqa: E402

from icwm.eval.runner import load_model  # noqa: E402


def main() -> None:
    model, _ = load_model("shipped", torch.device("cpu"))
    fit = model.embedders["pre_sr"].fit
    train = shard_groups(Path("data/shards/small_nominal"), "pre_sr")
    net = train_mlp(*dataset(fit, train, range(1, 17), 8, 0))
    print("| system | error k=16 (dB) | slope |\n|---|---|---|")
    for name, g in train.items():
        xs, ys = dataset(fit, {name: g}, [16], 1, 99)
        with torch.no_grad():
            pred = 20.0 * net(xs)[:, 0]
        slope = torch.cov(torch.stack((pred, ys)))[0, 1] / ys.var()
        print(f"| {name} | {(pred - ys).abs().mean():.2f} | {slope:.2f} |")


if __name__ == "__main__":
    main()
