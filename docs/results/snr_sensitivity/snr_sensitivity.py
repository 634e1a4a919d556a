"""How accurate must an SNR estimate be for pre_sr / pre_mm to reach a given eta? (evaluation only, no model)

On the latent precoding families' evaluation episodes (``configs/eval/latent.yaml``: same systems, seed and queries
as ``launch/evaluate.py``), the query's precoder is the label's solver (pre_sr: WMMSE as the latent baselines run it;
pre_mm: the max-min optimum) designed at the true SNR plus an error e, and transmitted at full power, exactly as the
oracle (e = 0) and blind (the stated prior) baselines are. Errors: e = +-sigma (random sign, "fixed") and
e ~ N(0, sigma^2) ("gauss"), from a generator seeded per system. Prints a Markdown table of pooled eta per family.

    OMP_NUM_THREADS=2 python docs/results/snr_sensitivity/snr_sensitivity.py > docs/results/snr_sensitivity/table.md
"""
from __future__ import annotations

import sys

import torch

from icwm import tasks
from icwm.config import load_cli
from icwm.data.shards import stable_seed
from icwm.eval.config import EvalConfig
from icwm.eval.eta import eta, per_query_metric
from icwm.eval.runner import episodes, load_families, query, units
from icwm.tasks.common import flat, snr_to_power

SIGMAS = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0]       # dB
SOLVERS = {"pre_sr": lambda: tasks.get("pre_sr").wmmse_latent, "pre_mm": lambda: tasks.get("pre_mm").optimum}


def metric_at(task, solve, q: dict, p: torch.Tensor, name: str) -> torch.Tensor:
    """Per-query metric [E] of the solver's precoder designed at power p [E] on queries q [E, ...]."""
    h = flat(q["h"], 2)
    W = solve(h, p)
    return task.metric({"W": W.reshape(tuple(q["h"].shape[:-2]) + tuple(W.shape[-2:]))}, q)[name]


def main(argv: list[str]) -> None:
    cfg = load_cli(EvalConfig, ["--config", "configs/eval/latent.yaml", "ks=[0,1,4,16]", *argv])
    families = load_families(cfg)
    n_pairs = cfg.ks[-1] + 1
    print("| task | family | queries | " + " | ".join(f"fixed {s:g} dB" for s in SIGMAS) + " | "
          + " | ".join(f"gauss {s:g} dB" for s in SIGMAS) + " |")
    print("|---" * (3 + 2 * len(SIGMAS)) + "|")
    for t in ("pre_sr", "pre_mm"):
        task, solve = tasks.get(t), SOLVERS[t]()
        name, scale = per_query_metric(t)
        for fam, systems in units(cfg, families, t):
            vals: dict[str, list[torch.Tensor]] = {}
            for system in systems:
                g = torch.Generator().manual_seed(stable_seed(cfg.seed, "snr_error", fam, system.name, t))
                for sample in episodes(task, system, cfg.episodes, n_pairs, cfg.batch_size,
                                       (cfg.seed, "eval", fam, system.name, t)):
                    q = query(sample)
                    snr = flat(q["latent_snr_db"], 0)
                    runs = {"oracle": snr, "blind": flat(q["prior_snr_db"], 0)}
                    for s in SIGMAS:
                        sign = torch.randint(0, 2, snr.shape, generator=g) * 2 - 1
                        runs[f"fixed {s:g}"] = snr + s * sign
                        runs[f"gauss {s:g}"] = snr + s * torch.randn(snr.shape, generator=g)
                    for key, snr_db in runs.items():
                        vals.setdefault(key, []).append(metric_at(task, solve, q, snr_to_power(snr_db), name))
            v = {k: torch.cat(x) for k, x in vals.items()}
            cells = [eta(v[f"{kind} {s:g}"], v["blind"], v["oracle"], scale) for kind in ("fixed", "gauss")
                     for s in SIGMAS]
            print(f"| {t} | {fam} | {len(v['oracle'])} | "
                  + " | ".join(f"{c.eta:.2f} +- {c.eta_se:.2f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
