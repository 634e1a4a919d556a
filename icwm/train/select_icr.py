"""Choosing the in-context ridge's window widths on training episodes (never on evaluation episodes).

``cfg.icr_half_width`` (ce: pilots each side among a group's regressors) and ``cfg.icr_band_half_width`` (pf:
delay bins each side) set how many regressors the in-context fit (``grid_icr.GridFit``) gets. They are chosen by
the fit's own error on episodes of the training set: the head's first guess (nearest pilot for ce, the UL band for
pf) is corrected by ``GridFit`` at its initial ridge and pooling, for every pair position of k + 1-pair episodes,
and the chosen width is the smallest whose NMSE (dB, averaged over pair positions 1..k) is not worse than the best
width's by more than two standard errors of their paired per-episode difference (wider windows cost compute and,
with few demonstrations, variance).

    python -m icwm.train.select_icr --shards data/shards/small_mixed --task ce --widths 1 2 4 6 8 12 16
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from icwm.data.config import EpisodeConfig
from icwm.data.episodes import EpisodeDataset
from icwm.data.shards import load_index
from icwm.model.config import ModelConfig
from icwm.model.grid import GridEmbed
from icwm.model.grid_icr import GridFit

FIELD = {"ce": "icr_half_width", "pf": "icr_band_half_width"}


def pair_nmse_db(fit: GridFit, embed: GridEmbed, batch: dict) -> torch.Tensor:
    """NMSE in dB of the first guess corrected by ``fit`` for every episode and pair: [B, P]."""
    _, _, ctx = embed(batch)
    b = ctx.anchor.to(torch.complex64)
    out = b + fit(ctx.x.to(torch.complex64), ctx.y.to(torch.complex64), b)
    err = (out - ctx.y).abs().pow(2).sum((2, 3, 4))
    return 10.0 * torch.log10(err / ctx.y.abs().pow(2).sum((2, 3, 4)).clamp_min(1e-30))


def training_batches(shards_dir: str, task: str, k: int, batches: int = 0) -> list[dict]:
    """Batches of 8 episodes of ``task`` with exactly ``k`` demonstrations from a training shard set (``batches``
    = 0: one pass)."""
    if k < 1:
        raise ValueError(f"k: demonstrations per episode >= 1, got {k}")
    split = load_index(shards_dir).get("config", {}).get("split")
    if split != "train":
        raise ValueError(f"shards: a training set (split 'train'), got split {split!r} ({shards_dir}): widths are "
                         "never chosen on evaluation data")
    episodes = EpisodeConfig(shards_dir=shards_dir, task_weights={task: 1.0}, k_min=k, k_max=k, batch_size=8)
    data = EpisodeDataset(episodes, rank=0, world_size=1)
    return [data.batch_at(0, i) for i in range(batches or len(data))]


@torch.no_grad()
def width_curve(batches: list[dict], task: str, widths: list[int],
                cfg: ModelConfig | None = None) -> dict[int, torch.Tensor]:
    """NMSE (dB) of the fitted first guess per episode and pair position, per width: {width: [E, P]}.

    batches: episodes of ``task`` with one length P (model batch keys, e.g. ce ``h_ls`` [B, P, 1, pilots, N] and
    ``h`` [B, P, 1, S, N]).
    """
    if task not in FIELD:
        raise ValueError(f"task: one of {sorted(FIELD)}, got {task!r}")
    base = cfg or ModelConfig.flavour("small")
    curves = {}
    for w in widths:
        wcfg = dataclasses.replace(base, **{FIELD[task]: w})
        fit, embed = GridFit(wcfg, task), GridEmbed(wcfg, task)
        curves[w] = torch.cat([pair_nmse_db(fit, embed, b) for b in batches])
    return curves


def versus_best(curves: dict[int, torch.Tensor]) -> tuple[int, dict[int, torch.Tensor]]:
    """The best width (lowest NMSE, dB, mean over pair positions 1..k and episodes) and each width's per-episode
    difference to it: (best, {width: [E]}). curves: {width: [E, P]}."""
    score = {w: c[:, 1:].mean(1) for w, c in curves.items()}                    # {width: [E]}
    best = min(score, key=lambda w: float(score[w].mean()))
    return best, {w: s - score[best] for w, s in score.items()}


def choose(curves: dict[int, torch.Tensor], n_se: float = 2.0) -> int:
    """The smallest width whose NMSE (dB, mean over pair positions 1..k) exceeds the best width's by at most
    ``n_se`` standard errors of the paired per-episode difference. curves: {width: [E, P]}."""
    best, diff = versus_best(curves)
    for w in sorted(diff):
        d = diff[w]
        if w == best or float(d.mean()) <= n_se * float(d.std()) / len(d) ** 0.5:
            return w
    return best


def main(argv: list[str] | None = None) -> int:
    """Print the width curve of one task on a training shard set and the chosen width."""
    ap = argparse.ArgumentParser(prog="python -m icwm.train.select_icr", description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", required=True, help="a training shard set (index.json), never an evaluation set")
    ap.add_argument("--task", choices=sorted(FIELD), default="ce")
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 6, 8, 12, 16])
    ap.add_argument("--k", type=int, default=16, help="demonstrations per episode")
    ap.add_argument("--batches", type=int, default=0, help="batches of 8 episodes (0: one pass)")
    ap.add_argument("--n-se", type=float, default=2.0, help="standard errors a narrower width may lose by")
    a = ap.parse_args(argv)
    try:
        curves = width_curve(training_batches(a.shards, a.task, a.k, a.batches), a.task, a.widths)
    except ValueError as err:                 # bad shard set or arguments (ShardError included): one line, exit 2
        print(f"{ap.prog}: {err}", file=sys.stderr)
        return 2
    print(f"{a.task}: mean NMSE (dB) of the first guess + in-context fit, training episodes of {a.shards}")
    _, diff = versus_best(curves)
    print(f"width  pairs 1..k  vs best (SE)      k=1      k=4     k=16   ({len(next(iter(diff.values())))} episodes)")
    for w, e in curves.items():
        c, d = e.mean(0), diff[w]
        at = lambda j: f"{float(c[j]):7.2f}" if j < len(c) else "      -"  # noqa: E731
        print(f"{w:5d}  {float(c[1:].mean()):9.2f}  {float(d.mean()):+6.3f} ({float(d.std()) / len(d) ** 0.5:.3f})"
              f"  {at(1)}  {at(4)}  {at(16)}")
    print(f"chosen {FIELD[a.task]} = {choose(curves, a.n_se)} (smallest not worse than the best by {a.n_se:g} SE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
