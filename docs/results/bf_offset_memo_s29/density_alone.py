"""How far the demonstrations' offset density alone puts bf's panel offset: the softmax of g log(density + 1e-3) over
the probe's 31 bins (+-30 deg from the nominal), for gains g, at k = 16 on 64 fresh groups per latent bf system
(seed 777). No network: a check of what a read-out local in the offset can reach (``model.bf_density_kernel``), not
a setting (nothing in a config comes from it).

    OMP_NUM_THREADS=1 python docs/results/bf_offset_memo_s29/density_alone.py
"""
import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.model.sub6 import demo_density, offset_bank
from icwm.wireless import beams

FAMILIES = ["configs/systems/dual_latent_unseen.yaml", "configs/systems/dual_latent_seen_nominal.yaml"]
GAINS = (1, 2, 4, 8, 16)


def main() -> None:
    bf, centres = tasks.get("bf"), torch.linspace(-30, 30, 31)
    for fam in FAMILIES:
        for system in load_family(fam):
            g = bf.generate(system, 64, 17, torch.Generator().manual_seed(777))
            prior = g["prior_panel_offset_deg"]
            true, nom = g["latent_panel_offset_deg"][:, -1], prior[:, -1] if prior.dim() > 1 else prior
            az = beams.beam_azimuth(g["beam"], 256) + torch.deg2rad(nom.float()[:, None])
            off = torch.rad2deg(beams.sub6_azimuth(g["h_sub6"]) - az)         # each pair's implied offset
            d = demo_density(offset_bank(off, 31, 30.0))[:, -1]                   # the query's: 16 earlier pairs
            row = []
            for gain in GAINS:
                est = nom + torch.softmax(gain * torch.log(d + 1e-3), -1) @ centres
                row.append(f"{(est - true).abs().mean():.2f}")
            print(system.name, f"nom {float(nom[0]):+.1f}", "gain 1/2/4/8/16 err:", " ".join(row))


if __name__ == "__main__":
    main()
