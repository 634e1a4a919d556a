"""Can a read-out of the demonstrations' implied panel offsets reach the classical kernel-mode fit?

Per k-demonstration episode of a bf latent group (random order), each demo implies an offset (its sub-6 azimuth less
its beam's, ``beams.fit_panel_offset``'s per-pair value) read from the stated nominal. Features: the mean over the
demos of (a) ``sub6.offset_bank`` of the implied offsets (31 bumps over +-30 deg) or (b) today's label features
(``sub6.angle_features`` of the beam's azimuth, rotated by the nominal, and of the sub-6 azimuth), plus 1 / k. An
MLP (64 GELU units, standardised inputs, Adam, 3,000 steps; ``levels_readout.train_mlp``) per feature set, trained
on the training shards' latent bf groups (k = 1..16) only, predicts the offset from the nominal. Reported: mean
absolute offset error (degrees) at k = 4 and 16 on fresh groups (32 per system, 4 orders) of each seen and unseen
system, beside the kernel-mode fit's.

    OMP_NUM_THREADS=1 python docs/results/bf_offset_memo_s29/bank_readout.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s25"))
sys.path.insert(0, str(Path(__file__).parents[1] / "probe_memo_s28"))
from levels_readout import train_mlp  # noqa: E402  (the same MLP read-out, units / 20 inside)
from probe_memo import fresh_groups, shard_groups  # noqa: E402

from icwm.model.sub6 import angle_features, offset_bank  # noqa: E402
from icwm.wireless import beams  # noqa: E402

SEEN = ["configs/systems/dual_latent_seen.yaml", "configs/systems/dual_latent_seen_nominal.yaml"]
UNSEEN = ["configs/systems/dual_latent_unseen.yaml"]
KINDS = ("fit", "bank", "angles")


def per_pair(g: dict) -> dict:
    """The small per-pair tensors [group, sample] the features need (sub-6 azimuth, implied offset less the nominal,
    beam, nominal, true offset) and the codebook size."""
    az = beams.sub6_azimuth(g["h_sub6"])
    n_beams = g["beam_gain"].shape[-1]
    nom = g["prior_panel_offset_deg"].float()
    implied = torch.rad2deg(az - beams.beam_azimuth(g["beam"], n_beams)) - nom
    return {"az": az, "implied": implied, "nom": nom, "beam": g["beam"],
            "true": g["latent_panel_offset_deg"].float(), "n_beams": n_beams}


def features(p: dict, k: int, rng: torch.Generator, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [group, F] or the fit's estimate [group], true offset from the nominal [group]) of k-demo episodes
    (the query is the last of k + 1 pairs in a random order)."""
    n, s = p["beam"].shape
    order = torch.argsort(torch.rand(n, s, generator=rng), 1)[:, : k + 1]
    e = {key: torch.gather(v, 1, order) for key, v in p.items() if key != "n_beams"}
    true = e["true"][:, 0] - e["nom"][:, 0]
    if kind == "fit":
        use = torch.zeros(k + 1, k + 1, dtype=torch.bool)
        use[k, :k] = True
        fit = beams.fit_panel_offset(e["az"], e["beam"], use.expand(n, -1, -1), p["n_beams"])[:, -1]
        return fit - e["nom"][:, 0], true
    if kind == "bank":
        f = offset_bank(e["implied"][:, :k], 31, 30.0)
    else:
        az_beam = beams.beam_azimuth(e["beam"], p["n_beams"]) + torch.deg2rad(e["nom"])
        f = torch.cat((angle_features(az_beam, 3), angle_features(e["az"], 3)), -1)[:, :k]
    return torch.cat((f.mean(1), torch.full((n, 1), 1.0 / k)), 1), true


def dataset(groups: dict, ks, reps: int, seed: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    parts = [features(p, k, rng, kind) for _ in range(reps) for p in groups.values() for k in ks]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def main() -> None:
    train = {s: per_pair(g) for s, g in shard_groups(Path("data/shards/small_nominal"), "bf", "duall_").items()}
    sets = {fam: {s: per_pair(g) for s, g in fresh_groups(files, "bf", 32, 12345).items()}
            for fam, files in (("seen", SEEN), ("unseen", UNSEEN))}
    readers = {kind: train_mlp(*dataset(train, range(1, 17), 4, 0, kind)) for kind in KINDS[1:]}
    print("| family | system | k = 4: fit | bank | angles | k = 16: fit | bank | angles |\n"
          "|---|---|---|---|---|---|---|---|")
    for fam, groups in sets.items():
        for name, p in groups.items():
            cells = []
            for k in (4, 16):
                for kind in KINDS:
                    x, y = dataset({name: p}, [k], 4, 99, kind)
                    with torch.no_grad():
                        err = (x if kind == "fit" else readers[kind](x)) - y
                    cells.append(f"{err.abs().nanmean():.2f}")
            print(f"| {fam} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
