"""Is the latent probe's offset estimate what limits bf? Gain ratio of the rotated angle map at several offsets.

For each system of the bf latent families, 64 fresh groups of 17 pairs (seed 4242), k = 16: the mean beam-gain ratio
of ``beams.rotated_angle_map`` at the true offset, the prior (blind), the classical kernel-mode fit to the 16 demos
(``beams.fit_panel_offset``), the model's probe estimate, and the model's own beam; and the mean absolute offset
error of the prior, the fit and the probe (degrees).

    OMP_NUM_THREADS=1 python docs/results/bf_offset_memo_s29/offset_limit.py --model <dir or "shipped">
"""
import argparse

import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.eval.runner import load_model, model_query_pred, query
from icwm.wireless import beams

FAMILIES = ["configs/systems/dual_latent_unseen.yaml", "configs/systems/dual_latent_seen.yaml",
            "configs/systems/dual_latent_seen_nominal.yaml"]
K = 16


def one_system(model, system) -> str:
    bf = tasks.get("bf")
    g = bf.generate(system, 64, K + 1, torch.Generator().manual_seed(4242))
    q = query(g)
    n_beams = g["beam_gain"].shape[-1]
    az = beams.sub6_azimuth(g["h_sub6"])
    use = torch.zeros(K + 1, K + 1, dtype=torch.bool)
    use[K, :K] = True                                                   # the query's estimate reads the k demos
    fit = beams.fit_panel_offset(az, g["beam"], use.expand(len(az), -1, -1), n_beams)[:, -1]
    with torch.no_grad():
        pred = model_query_pred(model, bf, g, K, torch.device("cpu"))
    true, offsets = q["latent_panel_offset_deg"], {"true": q["latent_panel_offset_deg"],
                                                   "prior": q["prior_panel_offset_deg"], "fit": fit,
                                                   "probe": pred["latent_hat_panel_offset_deg"]}
    gain = lambda beam: q["beam_gain"].gather(-1, beam[:, None])[:, 0].mean().item()      # noqa: E731
    gains = {m: gain(beams.rotated_angle_map(az[:, -1], n_beams, phi)) for m, phi in offsets.items()}
    errs = {m: (phi - true).abs().mean().item() for m, phi in offsets.items() if m != "true"}
    return (f"| {system.name} | " + " | ".join(f"{v:.2f}" for v in errs.values()) + " | "
            + " | ".join(f"{v:.3f}" for v in gains.values()) + f" | {gain(pred['beam']):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="shipped", help='a model directory, or "shipped"')
    model, _ = load_model(ap.parse_args().model, torch.device("cpu"))
    print("| system | offset error (deg): prior | fit | probe | gain ratio, angle map at: true | prior | fit | probe "
          "| model's beam |\n|---|---|---|---|---|---|---|---|---|")
    for fam in FAMILIES:
        for system in load_family(fam):
            print(one_system(model, system), flush=True)


if __name__ == "__main__":
    main()
