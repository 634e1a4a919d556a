"""Do the bf head's demonstration votes help? Top-1 and gain ratio of a model per number of earlier pairs j, with
the vote weight at 0 and at ``weight``, paired on the same episodes of one family (seeds no evaluation uses).

    python scripts/measure_bf_votes.py [key=value ...]     (keys of VoteCheck below)

The model card's figure (v9, seen dual family, 2-core VM, 23 s): ``episodes=96``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from icwm import tasks as task_registry  # noqa: E402
from icwm.config import check, load_cli  # noqa: E402
from icwm.data.config import load_family  # noqa: E402
from icwm.eval.runner import episodes  # noqa: E402
from icwm.infer import FewShotModel  # noqa: E402

JS = (1, 2, 4, 8, 16)


@dataclass
class VoteCheck:
    """What to measure: model, family, sample sizes, the vote weight to compare with 0, seed prefix."""

    model: str = "shipped"                           # "shipped" or a save_pretrained directory
    family: str = "configs/systems/dual_seen.yaml"
    episodes: int = 96                               # per system
    chunk: int = 16
    weight: float = 0.9879                           # the vote weight training reached (version 7b)
    seed: str = "vote-seen"

    def __post_init__(self) -> None:
        for name in ("episodes", "chunk"):
            check(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))


def main(argv: list[str]) -> int:
    cfg = load_cli(VoteCheck, argv)
    model = FewShotModel.from_pretrained(None if cfg.model == "shipped" else cfg.model).model.eval()
    bf, head = task_registry.get("bf"), model.heads["bf"]
    res: dict[tuple, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for s in load_family(cfg.family):
            for smp in episodes(bf, s, cfg.episodes, max(JS) + 1, cfg.chunk, (cfg.seed, s.name)):
                batch = {"task": "bf", "k": max(JS), **{k: smp[k] for k in (*bf.X_KEYS, *bf.Y_KEYS)}}
                for w in (0.0, cfg.weight):
                    head.vote_w.fill_(w)
                    pred = model(batch)
                    for j in JS:
                        m = bf.metric({k: v[:, j] for k, v in pred.items()}, {k: v[:, j] for k, v in smp.items()})
                        for name in ("top1", "gain_ratio"):
                            res.setdefault((w, j, name), []).append(m[name].float())
    for name in ("top1", "gain_ratio"):
        for j in JS:
            a, b = (torch.cat(res[(w, j, name)]) for w in (0.0, cfg.weight))
            d = b - a
            print(f"{name} j={j:2d}: weight 0 {a.mean():.4f}, weight {cfg.weight:g} {b.mean():.4f}, paired change "
                  f"{d.mean():+.4f} +- {d.std() / len(d) ** 0.5:.4f} (n = {len(d)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
