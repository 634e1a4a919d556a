"""How far the demonstrations' implied offsets alone put bf's panel offset, in the two forms bf's binned probe can read
(``model.bf_density_form``): "mean", softmax of log(mean bank + 1e-3), and "loglik", softmax of the sum over the pairs
of log(bank + 1e-3) (floor 1e-3 in both, and for contrast the loglik form at floor 0.1), gain 1, over the probe's 31
bins (+-30 deg from the nominal), at k = 1 / 2 / 4 / 16 on 64 fresh groups per latent bf system (seed 555; training
families first). No network: the diagnosis behind the option, not a setting (nothing in a config comes from it).

    OMP_NUM_THREADS=1 python docs/results/bf_offset_memo_s29/loglik_alone.py \
        > docs/results/bf_offset_memo_s29/loglik_alone.md      # from the repository root
"""
import torch

from icwm import tasks
from icwm.data.config import load_family
from icwm.model.sub6 import offset_bank
from icwm.wireless import beams

FAMILIES = ["configs/systems/dual_latent_seen.yaml", "configs/systems/dual_latent_seen_nominal.yaml",
            "configs/systems/dual_latent_unseen.yaml"]


def main() -> None:
    bf, centres = tasks.get("bf"), torch.linspace(-30, 30, 31)
    print("mean absolute error (deg) at k = 1 / 2 / 4 / 16: mean form / loglik form / loglik at floor 0.1\n")
    for fam in FAMILIES:
        for system in load_family(fam):
            g = bf.generate(system, 64, 17, torch.Generator().manual_seed(555))
            prior = g["prior_panel_offset_deg"]
            true, nom = g["latent_panel_offset_deg"][:, -1], prior[:, -1] if prior.dim() > 1 else prior
            az = beams.beam_azimuth(g["beam"], 256) + torch.deg2rad(nom.float()[:, None])
            bank = offset_bank(torch.rad2deg(beams.sub6_azimuth(g["h_sub6"]) - az), 31, 30.0)    # [64, 17, 31]
            row = []
            for k in (1, 2, 4, 16):
                errs = []
                for logits in (torch.log(bank[:, :k].mean(1) + 1e-3), torch.log(bank[:, :k] + 1e-3).sum(1),
                               torch.log(bank[:, :k] + 1e-1).sum(1)):
                    est = nom + torch.softmax(logits, -1) @ centres
                    errs.append(f"{(est - true).abs().mean():.2f}")
                row.append(f"k{k}: " + "/".join(errs))
            print(f"- {fam.split('/')[-1]} {system.name} (nominal {float(nom[0]):+.1f}):", " ".join(row), flush=True)


if __name__ == "__main__":
    main()
