"""pre_sr at k = 0 in the latent form: where the shipped model's loss against blind comes from (session 41).

With no demonstration the model's precoder is WMMSE-100 from its (lambda, p) read-out at its probe's SNR estimate;
blind's is WMMSE at the stated range's centre (``prior_snr_db``). Per system this prints, on episodes the evaluation
never draws (seed parts "pre_sr_k0_s41", its own seed): the probe's estimate minus the centre (mean = bias, and its
mean absolute value), its error against the truth, and eta(0) = (m - blind) / (oracle - blind) of the sum rate for
(a) the model as evaluated and (b) the model told the centre as a given SNR (the given-form path: the head reads the
SNR, the refinement runs at it), which isolates the SNR read from the read-out + solver path.

    OMP_NUM_THREADS=2 python docs/results/pre_sr_k0_s41/k0.py [--episodes 64] [--seed 7] [--model shipped]
"""
from __future__ import annotations

import argparse

import torch

from icwm.eval.runner import episodes, load_model, model_query_pred, query, take
from icwm.model.icwm import LATENT_HAT
from icwm.tasks import pre_sr
from icwm.tasks.common import LATENT_PREFIX, PRIOR_PREFIX
from icwm.wireless.channels import load_family


def given_at_centre(sample: dict) -> dict:
    """The same episodes in the given form with ``snr_db`` = the stated centre at every pair (truth removed)."""
    out = {k: v for k, v in sample.items() if not k.startswith((LATENT_PREFIX, PRIOR_PREFIX))}
    out["snr_db"] = sample[PRIOR_PREFIX + "snr_db"].clone()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model", default="shipped")
    args = ap.parse_args()
    dev = torch.device("cpu")
    model, desc = load_model(args.model, dev)
    print(f"model {desc}; {args.episodes} episodes per system, seed {args.seed}\n")
    print("| family | system | probe - centre, mean / mean abs (dB) | probe - truth, mean abs (dB) | eta(0) model "
          "| eta(0) model told the centre |")
    print("|---|---|---|---|---|---|")
    for fam in ("latent_seen", "latent_unseen"):
        for system in load_family(f"configs/systems/{fam}.yaml"):
            s = next(episodes(pre_sr, system, args.episodes, 17, args.episodes, ("pre_sr_k0_s41", args.seed,
                                                                                     system.name)))
            q = query(s)
            pred = model_query_pred(model, pre_sr, s, 0, dev)
            hat = pred[LATENT_HAT + "snr_db"].float()
            off = hat - q["prior_snr_db"].float()
            err = (hat - q["latent_snr_db"].float()).abs()
            base = pre_sr.baselines(take(s, 0))
            rate = {m: pre_sr.metric(query(base[m]), q)["sum_rate"].mean() for m in ("oracle", "blind")}
            gap = rate["oracle"] - rate["blind"]
            m_a = pre_sr.metric(pred, q)["sum_rate"].mean()
            pred_b = model_query_pred(model, pre_sr, given_at_centre(s), 0, dev)
            m_b = pre_sr.metric({k: v for k, v in pred_b.items() if k != "snr_db"}, q)["sum_rate"].mean()
            print(f"| {fam} | {system.name} | {off.mean():+.2f} / {off.abs().mean():.2f} | {err.mean():.2f} | "
                  f"{(m_a - rate['blind']) / gap:+.3f} | {(m_b - rate['blind']) / gap:+.3f} |")


if __name__ == "__main__":
    main()
